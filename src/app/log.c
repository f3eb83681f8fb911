#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "buf.h"

static enum config_log_format log_format = CONFIG_LOG_TEXT;
static enum config_log_level log_level = CONFIG_LOG_INFO;

static const char *const log_level_names[] = {"debug", "info", "warn", "error"};

void log_setup(enum config_log_format format, enum config_log_level level)
{
	log_format = format;
	log_level = level;
}

bool log_enabled(enum config_log_level level)
{
	return level >= log_level;
}

static void log_timestamp(char *out, size_t len)
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(out, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, len - n, ".%03dZ", (int)(ts.tv_nsec / 1000000) % 1000);
}

/* Append s as the inside of a JSON string: quotes, backslashes and control
 * characters escaped, bytes >= 0x80 passed through when they form valid UTF-8
 * and written as \u00XX otherwise, so every line is valid JSON whatever a client
 * sent. */
static void log_json_string(struct buf *b, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	buf_append(b, "\"", 1);
	while (*p) {
		unsigned char c = *p;
		if (c == '"' || c == '\\') {
			char e[2] = {'\\', (char)c};
			buf_append(b, e, 2);
			p++;
		} else if (c < 0x20 || c == 0x7f) {
			buf_printf(b, "\\u%04x", c);
			p++;
		} else if (c < 0x80) {
			buf_append(b, p, 1);
			p++;
		} else {
			size_t n = (c & 0xe0) == 0xc0   ? 2
			           : (c & 0xf0) == 0xe0 ? 3
			           : (c & 0xf8) == 0xf0 ? 4
			                                : 0;
			size_t i = 1;
			while (n && i < n && (p[i] & 0xc0) == 0x80)
				i++;
			if (n && i == n) {
				buf_append(b, p, n);
				p += n;
			} else {
				buf_printf(b, "\\u%04x", c);
				p++;
			}
		}
	}
	buf_append(b, "\"", 1);
}

/* logfmt (SPEC 7): a value made only of [A-Za-z0-9._:@/+-] is written bare;
 * anything else is quoted, with a double quote and a backslash escaped by a
 * backslash and control octets written as \n, \r, \t or \xHH, so a value a
 * client chose can never end its quotes, start another field or another line. */
static bool log_bare_char(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       strchr("._:@/+-", c) != NULL;
}

static void log_text_value(struct buf *b, const char *s)
{
	bool quote = *s == '\0';
	for (const unsigned char *p = (const unsigned char *)s; *p && !quote; p++)
		quote = !log_bare_char(*p);
	if (!quote) {
		buf_append(b, s, strlen(s));
		return;
	}
	buf_append(b, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		unsigned char c = *p;
		if (c == '"' || c == '\\') {
			char e[2] = {'\\', (char)c};
			buf_append(b, e, 2);
		} else if (c == '\n') {
			buf_append(b, "\\n", 2);
		} else if (c == '\r') {
			buf_append(b, "\\r", 2);
		} else if (c == '\t') {
			buf_append(b, "\\t", 2);
		} else if (c < 0x20 || c == 0x7f) {
			buf_printf(b, "\\x%02x", c);
		} else {
			buf_append(b, p, 1);
		}
	}
	buf_append(b, "\"", 1);
}

void log_event(enum config_log_level level, const struct log_ctx *ctx, const char *msg,
               const char *const *kv)
{
	if (!log_enabled(level))
		return;
	char ts[40];
	log_timestamp(ts, sizeof ts);
	struct buf b;
	buf_init(&b, 64 * 1024);
	if (log_format == CONFIG_LOG_JSON) {
		buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":", ts,
		           log_level_names[level]);
		log_json_string(&b, msg);
		if (ctx && ctx->session) {
			buf_append(&b, ",\"session\":", 11);
			log_json_string(&b, ctx->session);
		}
		if (ctx && ctx->client) {
			buf_append(&b, ",\"client\":", 10);
			log_json_string(&b, ctx->client);
		}
		if (ctx && ctx->listener) {
			buf_append(&b, ",\"listener\":", 12);
			log_json_string(&b, ctx->listener);
		}
		for (size_t i = 0; kv && kv[i] && kv[i + 1]; i += 2) {
			buf_append(&b, ",", 1);
			log_json_string(&b, kv[i]);
			buf_append(&b, ":", 1);
			log_json_string(&b, kv[i + 1]);
		}
		buf_append(&b, "}\n", 2);
	} else {
		buf_printf(&b, "%s %s", ts, log_level_names[level]);
		if (ctx && ctx->session)
			buf_printf(&b, " [%s]", ctx->session);
		buf_append(&b, " ", 1);
		for (const unsigned char *p = (const unsigned char *)msg; *p; p++) {
			char c = (*p < 0x20 || *p == 0x7f) ? '?' : (char)*p;
			buf_append(&b, &c, 1);
		}
		if (ctx && ctx->client) {
			buf_append(&b, " client=", 8);
			log_text_value(&b, ctx->client);
		}
		if (ctx && ctx->listener) {
			buf_append(&b, " listener=", 10);
			log_text_value(&b, ctx->listener);
		}
		/* Keys are ours (fixed names), values may be anybody's. */
		for (size_t i = 0; kv && kv[i] && kv[i + 1]; i += 2) {
			buf_printf(&b, " %s=", kv[i]);
			log_text_value(&b, kv[i + 1]);
		}
		buf_append(&b, "\n", 1);
	}
	/* One write per line, so lines from the HTTP thread never interleave. */
	if (b.len)
		fwrite(b.data, 1, b.len, stderr);
	buf_free(&b);
}

void log_msg(enum config_log_level level, const char *fmt, ...)
{
	if (!log_enabled(level))
		return;
	char msg[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	log_event(level, NULL, msg, NULL);
}
