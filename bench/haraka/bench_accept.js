// Benchmark peer for bench/bench.py: accept every recipient and discard every
// message (the queue hook says OK without storing anything), like smtp-sink
// and mailport's SMTPD_DELIVER=discard.
exports.hook_rcpt = function (next) {
    next(OK);
};
exports.hook_queue = function (next) {
    next(OK);
};
