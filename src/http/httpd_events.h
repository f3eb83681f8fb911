/* httpd_events: GET /events, the spool's changes as Server-Sent Events
 * (SPEC 3, issue 17).
 *
 * Where the events come from: the spool's index calls an observer for every
 * message stored, moved or removed (spool_index_observe), whichever thread made
 * the change and whichever code asked for it (a commit, the webhook, DELETE,
 * retention). The observer only copies (change, id) into a bounded queue. A
 * thread of this module turns each into one frame
 *
 *   event: stored|state|deleted
 *   data: <the entry as GET /messages lists it; {"id":…} for deleted>
 *
 * (the file reads that needs happen there, never on the loop nor on
 * libmicrohttpd's thread) and keeps the latest HTTPD_EVENTS_RING frames in a
 * ring. Each client is a libmicrohttpd response whose content reader copies the
 * frames it has not had yet, and suspends its connection when there are none
 * (MHD_suspend_connection: no polling, no busy loop); the thread resumes the
 * suspended ones when a frame arrives, or when a client's heartbeat comment is
 * due (every HTTPD_EVENTS_HEARTBEAT_MS). A client that falls more than the ring
 * behind skips to the oldest frame kept.
 *
 * Bounds: at most max_clients clients (SMTPD_HTTP_MAX_EVENT_CLIENTS; more get
 * 503), HTTPD_EVENTS_PENDING changes waiting (more are dropped and counted),
 * HTTPD_EVENTS_RING frames of at most HTTPD_EVENTS_FRAME_MAX bytes each (an
 * entry larger than that is sent as {"id","state"}). libmicrohttpd's connection
 * limit is raised by max_clients (httpd.c) and one address may hold at most
 * HTTPD_EVENTS_PER_ADDRESS streams (of its 64 connections), so event clients
 * never take the slots other routes need; health is answered before
 * libmicrohttpd anyway (httpd_front.h). */
#ifndef MAILPORT_HTTPD_EVENTS_H
#define MAILPORT_HTTPD_EVENTS_H

#include <stddef.h>
#include <stdint.h>

#include <microhttpd.h>

#include "spool_index.h"

#define HTTPD_EVENTS_HEARTBEAT_MS 15000
/* Streams from one client address at most: half of libmicrohttpd's
 * per-address limit (HTTPD_PER_IP_LIMIT), so one address always has slots left
 * for the other routes. */
#define HTTPD_EVENTS_PER_ADDRESS 32
/* SMTPD_HTTP_MAX_EVENT_CLIENTS above this counts as this. */
#define HTTPD_EVENTS_CLIENTS_MAX 10000
#define HTTPD_EVENTS_RING        256
#define HTTPD_EVENTS_PENDING     1024
#define HTTPD_EVENTS_FRAME_MAX   (64u << 10)
/* What EventSource waits before it reconnects (the "retry:" field), ms. */
#define HTTPD_EVENTS_RETRY_MS 2000

struct httpd_events;

/* Start the thread and observe sp's index (sp NULL: no event ever comes, but
 * clients are served their heartbeats). 0 or -errno. */
int httpd_events_new(struct spool *sp, size_t max_clients, struct httpd_events **out);
/* Before MHD_stop_daemon: stop observing, refuse new clients, end every stream
 * (suspended connections are resumed, as libmicrohttpd requires) and join the
 * thread. NULL is a no-op. */
void httpd_events_shutdown(struct httpd_events *ev);
/* After MHD_stop_daemon (every client gone). NULL is a no-op. */
void httpd_events_free(struct httpd_events *ev);

/* Answer GET/HEAD /events once the caller has checked the token: a stream, or
 * 503 when max_clients are connected. */
enum MHD_Result httpd_events_serve(struct httpd_events *ev, struct MHD_Connection *conn);

/* Figures for /status: clients connected, changes dropped (queue full). */
void httpd_events_counts(struct httpd_events *ev, uint64_t *clients, uint64_t *dropped);

/* ---- pure part (unit-tested) ---- */

/* "event: <name>\ndata: <data>\n\n", malloc'ed, length in *len; NULL on out of
 * memory. data must hold no line break (compact JSON never does). */
char *httpd_events_frame(const char *name, const char *data, size_t *len);
/* The event name of a change: "stored", "state", "deleted". */
const char *httpd_events_name(enum spool_index_change ch);

#endif
