/* rspamd_reply: the pure side of rspamd (SPEC 8): the request's envelope
 * headers, and what rspamd's /checkv2 answer means (the action, the verdict
 * for the envelope, the header edits). No I/O. See rspamd.h. */
#include "rspamd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

const char *const rspamd_action_names[RSPAMD_ACTIONS] = {
    "no action", "greylist", "add header", "rewrite subject", "soft reject", "reject", "other",
};

/* Scores as rspamd prints them (8.3, not 8.3000000000000007). */
#define RSPAMD_JSON_FLAGS (JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15))

/* ---- the request's headers --------------------------------------------------------------- */

struct rspamd_hdrs {
	char **v;
	size_t n, cap;
	bool oom;
};

/* "Name: value", control bytes of the value made '?' (a CR or LF would let a
 * peer add headers of its choosing to the request). */
static void rspamd_hdr(struct rspamd_hdrs *h, const char *name, const char *value)
{
	if (h->oom)
		return;
	if (h->n + 2 > h->cap) {
		size_t ncap = h->cap ? h->cap * 2 : 16;
		char **v = realloc(h->v, ncap * sizeof *v);
		if (v == NULL) {
			h->oom = true;
			return;
		}
		h->v = v;
		h->cap = ncap;
	}
	size_t nl = strlen(name), vl = strlen(value);
	char *s = malloc(nl + 2 + vl + 1);
	if (s == NULL) {
		h->oom = true;
		return;
	}
	memcpy(s, name, nl);
	memcpy(s + nl, ": ", 2);
	for (size_t i = 0; i < vl; i++) {
		unsigned char c = (unsigned char)value[i];
		s[nl + 2 + i] = c < 0x20 || c == 0x7f ? '?' : (char)c;
	}
	s[nl + 2 + vl] = '\0';
	h->v[h->n++] = s;
	h->v[h->n] = NULL;
}

char **rspamd_request_headers(const struct spool_envelope *env, const char *mta_name,
                              const char *version)
{
	struct rspamd_hdrs h = {0};
	if (env->client_addr && env->client_addr[0] && strcmp(env->client_addr, "unknown") != 0)
		rspamd_hdr(&h, "IP", env->client_addr);
	if (env->helo && env->helo[0])
		rspamd_hdr(&h, "Helo", env->helo);
	/* The null sender as rspamd reads a bounce's. */
	rspamd_hdr(&h, "From", env->mail_from && env->mail_from[0] ? env->mail_from : "<>");
	for (size_t i = 0; i < env->nrcpt; i++)
		rspamd_hdr(&h, "Rcpt", env->rcpt[i]);
	if (env->id)
		rspamd_hdr(&h, "Queue-Id", env->id);
	if (env->auth_user)
		rspamd_hdr(&h, "User", env->auth_user);
	if (mta_name && mta_name[0])
		rspamd_hdr(&h, "MTA-Name", mta_name);
	if (env->tls_version) {
		rspamd_hdr(&h, "TLS-Version", env->tls_version);
		if (env->tls_cipher)
			rspamd_hdr(&h, "TLS-Cipher", env->tls_cipher);
	}
	char ua[64];
	snprintf(ua, sizeof ua, "mailport/%s", version ? version : "");
	rspamd_hdr(&h, "User-Agent", ua);
	if (h.oom || h.v == NULL) {
		rspamd_headers_free(h.v);
		return NULL;
	}
	return h.v;
}

void rspamd_headers_free(char **h)
{
	if (h == NULL)
		return;
	for (size_t i = 0; h[i]; i++)
		free(h[i]);
	free(h);
}

/* ---- SPF, DKIM, DMARC from rspamd's symbols ---------------------------------------------- */

/* rspamd 3.4's symbols (plugins/spf.lua, lualib/plugins/dmarc.lua, the DKIM
 * check) and the RFC 8601 2.7 result each stands for. Per method the first
 * symbol present wins: a message with one valid DKIM signature among broken
 * ones passes (RFC 6376 6.1: any valid signature counts), and a DMARC policy
 * that rejects, quarantines or is "none" with a failing message is a fail
 * (RFC 7489 11.2). */
static const struct {
	const char *method, *symbol, *result;
} rspamd_auth_symbols[] = {
    {"spf", "R_SPF_ALLOW", "pass"},
    {"spf", "R_SPF_FAIL", "fail"},
    {"spf", "R_SPF_SOFTFAIL", "softfail"},
    {"spf", "R_SPF_NEUTRAL", "neutral"},
    {"spf", "R_SPF_DNSFAIL", "temperror"},
    {"spf", "R_SPF_PERMFAIL", "permerror"},
    {"spf", "R_SPF_NA", "none"},
    {"dkim", "R_DKIM_ALLOW", "pass"},
    {"dkim", "R_DKIM_REJECT", "fail"},
    {"dkim", "R_DKIM_TEMPFAIL", "temperror"},
    {"dkim", "R_DKIM_PERMFAIL", "permerror"},
    {"dkim", "R_DKIM_NA", "none"},
    {"dmarc", "DMARC_POLICY_ALLOW", "pass"},
    {"dmarc", "DMARC_POLICY_ALLOW_WITH_FAILURES", "pass"},
    {"dmarc", "DMARC_POLICY_REJECT", "fail"},
    {"dmarc", "DMARC_POLICY_QUARANTINE", "fail"},
    {"dmarc", "DMARC_POLICY_SOFTFAIL", "fail"},
    {"dmarc", "DMARC_DNSFAIL", "temperror"},
    {"dmarc", "DMARC_BAD_POLICY", "permerror"},
    {"dmarc", "DMARC_NA", "none"},
};

const char *rspamd_auth_result(struct json_t *symbols, const char *method)
{
	for (size_t i = 0; i < sizeof rspamd_auth_symbols / sizeof rspamd_auth_symbols[0]; i++)
		if (strcmp(rspamd_auth_symbols[i].method, method) == 0 &&
		    json_object_get(symbols, rspamd_auth_symbols[i].symbol) != NULL)
			return rspamd_auth_symbols[i].result;
	return "none";
}

/* ---- the milter block ------------------------------------------------------------------ */

/* One add_headers entry: a string (added at the end), or {"value", "order"}
 * ("index" is rspamd's other spelling; without either, at the end). Bad
 * names and values of other types are skipped, as rspamd's milter does. */
static int rspamd_add_one(struct hdredit *e, const char *name, json_t *v)
{
	int rc = 0;
	if (json_is_string(v)) {
		rc = hdredit_add(e, name, json_string_value(v), false, 0);
	} else if (json_is_object(v) && json_is_string(json_object_get(v, "value"))) {
		json_t *o = json_object_get(v, "order");
		if (o == NULL)
			o = json_object_get(v, "index");
		rc = hdredit_add(e, name, json_string_value(json_object_get(v, "value")),
		                 json_is_integer(o), (long)json_integer_value(o));
	}
	return rc == -EINVAL ? 0 : rc;
}

/* rspamd's "milter" block, as its milter proxy applies it: remove_headers
 * {"name": n} (0: all, n: the n-th, -n: the n-th from the end), then
 * add_headers {"name": string | {value, order} | [those]}. */
static int rspamd_milter(struct hdredit *e, json_t *milter)
{
	const char *name;
	json_t *v;
	int rc = 0;
	json_object_foreach(json_object_get(milter, "remove_headers"), name, v)
	{
		if (!json_is_integer(v))
			continue;
		rc = hdredit_remove(e, name, (long)json_integer_value(v));
		if (rc == -ENOMEM)
			return rc;
	}
	json_object_foreach(json_object_get(milter, "add_headers"), name, v)
	{
		if (json_is_array(v)) {
			size_t i;
			json_t *item;
			json_array_foreach(v, i, item)
			{
				if ((rc = rspamd_add_one(e, name, item)) < 0)
					return rc;
			}
		} else if ((rc = rspamd_add_one(e, name, v)) < 0) {
			return rc;
		}
	}
	return 0;
}

/* ---- the answer ---------------------------------------------------------------------- */

static enum rspamd_action rspamd_action_of(const char *word)
{
	for (int i = 0; i < RSPAMD_OTHER; i++)
		if (strcmp(rspamd_action_names[i], word) == 0)
			return (enum rspamd_action)i;
	return RSPAMD_OTHER;
}

/* The reply text: one line of printable ASCII, blanks trimmed, cut. */
static void rspamd_text(const char *in, char *out, size_t max)
{
	size_t n = strlen(in), a = 0, o = 0;
	while (a < n && (in[a] == ' ' || in[a] == '\t' || in[a] == '\r' || in[a] == '\n'))
		a++;
	for (size_t i = a; i < n && o + 1 < max; i++) {
		unsigned char c = (unsigned char)in[i];
		out[o++] = c >= 0x20 && c < 0x7f ? (char)c : ' ';
	}
	while (o > 0 && out[o - 1] == ' ')
		o--;
	out[o] = '\0';
}

/* {"action","score","required_score","spf","dkim","dmarc","symbols":{name:score}} */
static json_t *rspamd_verdict_obj(json_t *root, const char *action)
{
	json_t *symbols = json_object_get(root, "symbols");
	json_t *scores = json_object();
	const char *name;
	json_t *sym;
	bool ok = scores != NULL;
	json_object_foreach(symbols, name, sym)
	{
		json_t *sc = json_object_get(sym, "score");
		if (ok)
			ok = json_object_set_new(scores, name, json_real(json_number_value(sc))) ==
			     0;
	}
	json_t *v = ok ? json_object() : NULL;
	ok =
	    v != NULL && json_object_set_new(v, "action", json_string(action)) == 0 &&
	    json_object_set_new(
	        v, "score", json_real(json_number_value(json_object_get(root, "score")))) == 0 &&
	    json_object_set_new(
	        v, "required_score",
	        json_real(json_number_value(json_object_get(root, "required_score")))) == 0 &&
	    json_object_set_new(v, "spf", json_string(rspamd_auth_result(symbols, "spf"))) == 0 &&
	    json_object_set_new(v, "dkim", json_string(rspamd_auth_result(symbols, "dkim"))) == 0 &&
	    json_object_set_new(v, "dmarc", json_string(rspamd_auth_result(symbols, "dmarc"))) ==
	        0 &&
	    json_object_set(v, "symbols", scores) == 0;
	json_decref(scores);
	if (!ok) {
		json_decref(v);
		return NULL;
	}
	return v;
}

int rspamd_verdict_parse(const char *reply, size_t len, const char *authserv_id,
                         struct rspamd_verdict *v, char *why, size_t whylen)
{
	*v = (struct rspamd_verdict){0};
	hdredit_init(&v->edits, RSPAMD_TRACE_FIELDS);
	json_error_t jerr;
	json_t *root = json_loadb(reply, len, 0, &jerr);
	const char *action = json_string_value(json_object_get(root, "action"));
	if (!json_is_object(root) || action == NULL) {
		snprintf(why, whylen, "%s",
		         root == NULL ? "the answer is not JSON" : "the answer has no action");
		json_decref(root);
		return -EINVAL;
	}
	v->action = rspamd_action_of(action);
	json_t *msg = json_object_get(json_object_get(root, "messages"), "smtp_message");
	if (json_is_string(msg))
		rspamd_text(json_string_value(msg), v->text, sizeof v->text);
	json_t *obj = rspamd_verdict_obj(root, action);
	v->json = obj ? json_dumps(obj, RSPAMD_JSON_FLAGS) : NULL;
	json_decref(obj);
	int rc = v->json ? 0 : -ENOMEM;
	/* RFC 8601 5: results claiming our name go before rspamd's are added. */
	if (rc == 0 && authserv_id && authserv_id[0])
		rc = hdredit_drop_authres(&v->edits, authserv_id);
	if (rc == 0)
		rc = rspamd_milter(&v->edits, json_object_get(root, "milter"));
	/* A signature rspamd made (dkim_signing, for an authenticated sender):
	 * at the top, as its milter puts it (position 1, under our trace). */
	json_t *sig = json_object_get(root, "dkim-signature");
	if (rc == 0 && json_is_string(sig))
		rc = hdredit_add(&v->edits, "DKIM-Signature", json_string_value(sig), true, 1);
	size_t i;
	json_t *item;
	json_array_foreach(json_is_array(sig) ? sig : NULL, i, item)
	{
		if (rc == 0 && json_is_string(item))
			rc = hdredit_add(&v->edits, "DKIM-Signature", json_string_value(item), true,
			                 1);
	}
	const char *subject = json_string_value(json_object_get(root, "subject"));
	if (rc == 0 && v->action == RSPAMD_REWRITE_SUBJECT && subject != NULL)
		rc = hdredit_set(&v->edits, "Subject", subject);
	/* rspamd's milter: the spam header's earlier copies go, one is set. */
	if (rc == 0 && v->action == RSPAMD_ADD_HEADER)
		rc = hdredit_remove(&v->edits, "X-Spam", 0);
	if (rc == 0 && v->action == RSPAMD_ADD_HEADER)
		rc = hdredit_add(&v->edits, "X-Spam", "Yes", false, 0);
	json_decref(root);
	if (rc < 0) {
		rspamd_verdict_free(v);
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	return 0;
}

void rspamd_verdict_free(struct rspamd_verdict *v)
{
	if (v == NULL)
		return;
	free(v->json);
	v->json = NULL;
	hdredit_free(&v->edits);
}
