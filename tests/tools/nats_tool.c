/* nats_tool: what the NATS tests and the benchmark need from JetStream, with
 * Debian's libnats (the `nats` CLI is not packaged):
 *
 *   nats_tool create URL STREAM SUBJECT REPLICAS   add the stream (retried for
 *                                                  up to 60 s while the cluster
 *                                                  elects its meta leader)
 *   nats_tool count URL STREAM                     print the stream's message count
 *   nats_tool dump URL STREAM DURABLE              read every message through a
 *                                                  durable pull consumer, one JSON
 *                                                  line each on stdout, acknowledged
 *                                                  after it is written
 *   nats_tool get URL STREAM                       read every message by sequence
 *                                                  from the stream leader (the
 *                                                  STREAM.MSG.GET API), same lines
 *
 * A dump line: {"seq":N,"id":"<Nats-Msg-Id>","envelope":"...","mail_from":"...",
 * "rcpt":["..."],"data":"<base64 of the payload>"}. NATS_CA in the
 * environment: the CA file that verifies a tls:// server. Exit 0, or 1 with a
 * message on stderr. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <nats/nats.h>
#include <openssl/evp.h>

static int die(const char *what, natsStatus s, jsErrCode jerr)
{
	fprintf(stderr, "nats_tool: %s: %s (%d)\n", what, natsStatus_GetText(s), (int)jerr);
	return 1;
}

static natsStatus tool_connect(const char *url, natsConnection **nc, jsCtx **js)
{
	natsOptions *o = NULL;
	natsStatus s = natsOptions_Create(&o);
	if (s == NATS_OK)
		s = natsOptions_SetURL(o, url);
	if (s == NATS_OK)
		s = natsOptions_SetTimeout(o, 5000);
	if (s == NATS_OK)
		s = natsOptions_SetMaxReconnect(o, 60);
	if (s == NATS_OK)
		s = natsOptions_SetReconnectWait(o, 500);
	/* NATS_CA: the CA that verifies a tls:// server. */
	const char *ca = getenv("NATS_CA");
	if (s == NATS_OK && ca && ca[0])
		s = natsOptions_LoadCATrustedCertificates(o, ca);
	if (s == NATS_OK)
		s = natsConnection_Connect(nc, o);
	natsOptions_Destroy(o);
	jsOptions jo;
	jsOptions_Init(&jo);
	jo.Wait = 10000;
	if (s == NATS_OK)
		s = natsConnection_JetStream(js, *nc, &jo);
	return s;
}

static int tool_create(jsCtx *js, const char *stream, const char *subject, int replicas)
{
	jsStreamConfig sc;
	jsStreamConfig_Init(&sc);
	sc.Name = stream;
	const char *subjects[] = {subject};
	sc.Subjects = subjects;
	sc.SubjectsLen = 1;
	sc.Storage = js_FileStorage;
	sc.Replicas = replicas;
	natsStatus s = NATS_ERR;
	jsErrCode jerr = 0;
	for (int i = 0; i < 120; i++) {
		jsStreamInfo *si = NULL;
		s = js_AddStream(&si, js, &sc, NULL, &jerr);
		jsStreamInfo_Destroy(si);
		if (s == NATS_OK)
			return 0;
		usleep(500 * 1000);
	}
	return die("js_AddStream", s, jerr);
}

static int tool_count(jsCtx *js, const char *stream)
{
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	natsStatus s = js_GetStreamInfo(&si, js, stream, NULL, &jerr);
	if (s != NATS_OK)
		return die("js_GetStreamInfo", s, jerr);
	printf("%llu\n", (unsigned long long)si->State.Msgs);
	jsStreamInfo_Destroy(si);
	return 0;
}

static json_t *tool_line(natsMsg *m, uint64_t seq)
{
	const char *id = NULL, *env = NULL, *from = NULL;
	natsMsgHeader_Get(m, "Nats-Msg-Id", &id);
	natsMsgHeader_Get(m, "Mailport-Envelope", &env);
	natsMsgHeader_Get(m, "Mailport-Mail-From", &from);
	const char **rcpt = NULL;
	int nrcpt = 0;
	json_t *ra = json_array();
	if (natsMsgHeader_Values(m, "Mailport-Rcpt-To", &rcpt, &nrcpt) == NATS_OK) {
		for (int i = 0; i < nrcpt; i++)
			json_array_append_new(ra, json_string(rcpt[i]));
		free((void *)rcpt);
	}
	int len = natsMsg_GetDataLength(m);
	unsigned char *b64 = malloc((size_t)len / 3 * 4 + 8);
	EVP_EncodeBlock(b64, (const unsigned char *)natsMsg_GetData(m), len);
	json_t *o = json_pack("{s:I, s:s?, s:s?, s:s?, s:o, s:s}", "seq", (json_int_t)seq, "id", id,
	                      "envelope", env, "mail_from", from, "rcpt", ra, "data", (char *)b64);
	free(b64);
	return o;
}

static int tool_dump(jsCtx *js, const char *stream, const char *durable)
{
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	natsStatus s = js_GetStreamInfo(&si, js, stream, NULL, &jerr);
	if (s != NATS_OK)
		return die("js_GetStreamInfo", s, jerr);
	uint64_t want = si->State.Msgs;
	char subject[256];
	snprintf(subject, sizeof subject, "%s", si->Config->Subjects[0]);
	jsStreamInfo_Destroy(si);

	jsSubOptions so;
	jsSubOptions_Init(&so);
	so.Stream = stream;
	so.Config.AckPolicy = js_AckExplicit;
	so.Config.DeliverPolicy = js_DeliverAll;
	so.Config.MaxAckPending = 20000;
	natsSubscription *sub = NULL;
	s = js_PullSubscribe(&sub, js, subject, durable, NULL, &so, &jerr);
	if (s != NATS_OK)
		return die("js_PullSubscribe", s, jerr);
	uint64_t got = 0;
	int empty = 0;
	time_t start = time(NULL);
	/* Until the stream's count is read and a few fetches came back empty
	 * (bounded: 120 s in all). */
	while ((got < want || empty < 2) && time(NULL) - start < 120) {
		natsMsgList list = {0};
		s = natsSubscription_Fetch(&list, sub, 500, 1000, &jerr);
		if (s == NATS_TIMEOUT || list.Count == 0) {
			empty++;
			if (got >= want && empty >= 2)
				break;
			natsMsgList_Destroy(&list);
			continue;
		}
		if (s != NATS_OK) {
			natsMsgList_Destroy(&list);
			return die("natsSubscription_Fetch", s, jerr);
		}
		empty = 0;
		for (int i = 0; i < list.Count; i++) {
			natsMsg *m = list.Msgs[i];
			jsMsgMetaData *meta = NULL;
			uint64_t seq = 0;
			if (natsMsg_GetMetaData(&meta, m) == NATS_OK) {
				seq = meta->Sequence.Stream;
				jsMsgMetaData_Destroy(meta);
			}
			json_t *o = tool_line(m, seq);
			char *text = json_dumps(o, JSON_COMPACT);
			/* Processed (written out), then acknowledged. */
			printf("%s\n", text);
			free(text);
			json_decref(o);
			natsMsg_Ack(m, NULL);
			got++;
		}
		fflush(stdout);
		natsMsgList_Destroy(&list);
	}
	natsSubscription_Destroy(sub);
	fprintf(stderr, "nats_tool: %llu message(s), the stream had %llu\n",
	        (unsigned long long)got, (unsigned long long)want);
	return 0;
}

/* The stream leader's copy, message by message. A consumer reads the copy of
 * the replica it was placed on; the leader's is the one the acknowledgements
 * came from. */
static int tool_get(jsCtx *js, const char *stream)
{
	jsStreamInfo *si = NULL;
	jsErrCode jerr = 0;
	natsStatus s = js_GetStreamInfo(&si, js, stream, NULL, &jerr);
	if (s != NATS_OK)
		return die("js_GetStreamInfo", s, jerr);
	uint64_t first = si->State.FirstSeq, last = si->State.LastSeq, got = 0;
	fprintf(stderr, "nats_tool: leader %s, sequences %llu..%llu\n",
	        si->Cluster && si->Cluster->Leader ? si->Cluster->Leader : "-",
	        (unsigned long long)first, (unsigned long long)last);
	jsStreamInfo_Destroy(si);
	for (uint64_t seq = first; seq > 0 && seq <= last; seq++) {
		natsMsg *m = NULL;
		for (int attempt = 0; attempt < 10; attempt++) {
			jerr = 0;
			s = js_GetMsg(&m, js, stream, seq, NULL, &jerr);
			if (s != NATS_TIMEOUT)
				break;
			sleep(1);
		}
		if (s != NATS_OK && jerr == JSNoMessageFoundErr)
			continue; /* deleted */
		if (s != NATS_OK)
			return die("js_GetMsg", s, jerr);
		json_t *o = tool_line(m, seq);
		char *text = json_dumps(o, JSON_COMPACT);
		printf("%s\n", text);
		free(text);
		json_decref(o);
		natsMsg_Destroy(m);
		got++;
	}
	fflush(stdout);
	fprintf(stderr, "nats_tool: %llu message(s)\n", (unsigned long long)got);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr,
		        "usage: nats_tool create URL STREAM SUBJECT REPLICAS | count URL STREAM "
		        "| dump URL STREAM DURABLE | get URL STREAM\n");
		return 2;
	}
	natsConnection *nc = NULL;
	jsCtx *js = NULL;
	natsStatus s = tool_connect(argv[2], &nc, &js);
	if (s != NATS_OK)
		return die("connect", s, 0);
	int rc = 2;
	if (strcmp(argv[1], "create") == 0 && argc == 6)
		rc = tool_create(js, argv[3], argv[4], atoi(argv[5]));
	else if (strcmp(argv[1], "count") == 0 && argc == 4)
		rc = tool_count(js, argv[3]);
	else if (strcmp(argv[1], "dump") == 0 && argc == 5)
		rc = tool_dump(js, argv[3], argv[4]);
	else if (strcmp(argv[1], "get") == 0 && argc == 4)
		rc = tool_get(js, argv[3]);
	else
		fprintf(stderr, "nats_tool: bad arguments\n");
	jsCtx_Destroy(js);
	natsConnection_Destroy(nc);
	nats_CloseAndWait(2000);
	return rc;
}
