/* config_doc: the settings table (config_table.c) written out for people: --help,
 * the README's Markdown table, mailport(8) and /etc/default/mailport. All four
 * walk config_settings[], so none can miss a setting or show another default. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "config_priv.h"

static const char *config_default_text(const struct config_setting *s)
{
	if (s->def[0] != '\0')
		return s->def;
	return s->def_text != NULL ? s->def_text : "none";
}

static void config_metavar(const struct config_setting *s, char *dst, size_t n)
{
	static const char *const names[] = {
	    [CONFIG_STRING] = "VALUE",      [CONFIG_BOOL] = "BOOL", [CONFIG_SIZE] = "SIZE",
	    [CONFIG_DURATION] = "DURATION", [CONFIG_COUNT] = "N",   [CONFIG_ENUM] = "",
	};
	if (s->choices != NULL)
		config_join_choices(dst, n, s->choices, "|", "|");
	else
		snprintf(dst, n, "%s", s->metavar != NULL ? s->metavar : names[s->kind]);
}

/* Print text word-wrapped to 80 columns, each line after `indent`. */
static void config_wrap(FILE *out, const char *indent, const char *text)
{
	const size_t width = 80 - strlen(indent);
	while (*text != '\0') {
		size_t len = strlen(text), cut = len;
		if (len > width) {
			cut = width;
			while (cut > 0 && text[cut] != ' ')
				cut--;
			if (cut == 0)
				cut = strcspn(text, " ");
		}
		fprintf(out, "%s%.*s\n", indent, (int)cut, text);
		text += cut;
		while (*text == ' ')
			text++;
	}
}

void config_print_help(FILE *out)
{
	fputs("Usage: mailport [--NAME VALUE | --NAME=VALUE]...\n"
	      "       mailport --help | --version | --check-config | --healthcheck\n"
	      "\n"
	      "mailport receives mail over SMTP and stores it in a Maildir spool.\n"
	      "\n"
	      "Actions:\n",
	      out);
	for (size_t k = 0; k < config_actions_count; k++) {
		if (config_actions[k].help != NULL)
			fprintf(out, "  --%-14s %s\n", config_actions[k].flag,
			        config_actions[k].help);
	}
	fputs("\nSettings:\n", out);
	config_wrap(out, "  ",
	            "Every setting is a flag --NAME and an environment variable SMTPD_NAME; "
	            "a flag wins over the environment. SMTPD_NAME_FILE=PATH reads the value "
	            "from a file instead (one trailing newline stripped, the Docker secrets "
	            "convention); setting both SMTPD_NAME and SMTPD_NAME_FILE is an error. "
	            "An empty value counts as not given, so the default applies. A value "
	            "that begins with -- must be written --NAME=VALUE.");
	config_wrap(out, "  ",
	            "BOOL is 1/true/yes/on or 0/false/no/off (any case). SIZE is bytes, or a "
	            "number with K, M or G (powers of 1024). DURATION is seconds, or a number "
	            "with s, m or h. \"image\" is the default in the container image.");
	for (size_t i = 0; i < config_settings_count; i++) {
		const struct config_setting *s = &config_settings[i];
		char meta[CONFIG_WHY_MAX];
		config_metavar(s, meta, sizeof meta);
		fprintf(out, "\n  --%s %s  (%s, default %s", s->name, meta, s->env,
		        config_default_text(s));
		if (s->image_def != NULL)
			fprintf(out, ", image %s", s->image_def);
		fputs(")\n", out);
		config_wrap(out, "      ", s->help);
	}
}

/* A Markdown table cell: a "|" would end the cell early, a "*" could start emphasis. */
static void config_md_cell(FILE *out, const char *text, bool code)
{
	fputs(code ? " `" : " ", out);
	for (; *text != '\0'; text++) {
		if (*text == '|' || (!code && *text == '*'))
			fputc('\\', out);
		fputc(*text, out);
	}
	fputs(code ? "` |" : " |", out);
}

void config_print_markdown(FILE *out)
{
	fputs("| Variable | Flag | Default | Image default | Description |\n"
	      "| --- | --- | --- | --- | --- |\n",
	      out);
	for (size_t i = 0; i < config_settings_count; i++) {
		const struct config_setting *s = &config_settings[i];
		char flag[CONFIG_SOURCE_MAX], desc[2 * CONFIG_WHY_MAX];
		snprintf(flag, sizeof flag, "--%s", s->name);
		fputc('|', out);
		config_md_cell(out, s->env, true);
		config_md_cell(out, flag, true);
		config_md_cell(out, config_default_text(s), s->def[0] != '\0');
		config_md_cell(out, s->image_def != NULL ? s->image_def : "same",
		               s->image_def != NULL);
		size_t o = (size_t)snprintf(desc, sizeof desc, "%s", s->help);
		if (s->choices != NULL && o < sizeof desc) {
			o += (size_t)snprintf(desc + o, sizeof desc - o, " One of");
			for (size_t k = 0; s->choices[k] != NULL && o < sizeof desc; k++)
				o += (size_t)snprintf(desc + o, sizeof desc - o, "%s `%s`",
				                      k == 0 ? "" : ",", s->choices[k]);
			if (o < sizeof desc)
				snprintf(desc + o, sizeof desc - o, ".");
		}
		config_md_cell(out, desc, false);
		fputc('\n', out);
	}
}

/* roff text: a backslash is \e, a hyphen \- (so flags copy and paste as
 * ASCII), and a line must not start with . or ' (a request); bol: the text
 * starts a line. */
static void config_roff(FILE *out, const char *text, bool bol)
{
	for (; *text != '\0'; text++) {
		if (bol && (*text == '.' || *text == '\''))
			fputs("\\&", out);
		bol = *text == '\n';
		if (*text == '\\')
			fputs("\\e", out);
		else if (*text == '-')
			fputs("\\-", out);
		else
			fputc(*text, out);
	}
}

void config_print_man(FILE *out, const char *version)
{
	fputs(".TH MAILPORT 8 \"\" \"mailport ", out);
	config_roff(out, version, false);
	fputs("\" \"System Administration\"\n"
	      ".SH NAME\n"
	      "mailport \\- container\\-native SMTP receiving service\n"
	      ".SH SYNOPSIS\n"
	      ".B mailport\n"
	      "[\\fB\\-\\-\\fIname\\fR \\fIvalue\\fR | \\fB\\-\\-\\fIname\\fB=\\fIvalue\\fR]...\n"
	      ".br\n"
	      ".B mailport\n"
	      "\\fB\\-\\-help\\fR | \\fB\\-\\-version\\fR | \\fB\\-\\-check\\-config\\fR |"
	      " \\fB\\-\\-healthcheck\\fR\n"
	      ".SH DESCRIPTION\n"
	      ".B mailport\n"
	      "receives mail over SMTP (RFC 5321, with ESMTP extensions) on one libuv event loop\n"
	      "and stores every accepted message durably in a Maildir spool before it answers\n"
	      "250. A side port speaks HTTP: health (/livez, /readyz), status, Prometheus\n"
	      "metrics and the messages API.\n"
	      ".SH ACTIONS\n",
	      out);
	for (size_t k = 0; k < config_actions_count; k++) {
		if (config_actions[k].help == NULL)
			continue;
		fputs(".TP\n.B \\-\\-", out);
		config_roff(out, config_actions[k].flag, false);
		fputc('\n', out);
		config_roff(out, config_actions[k].help, true);
		fputs(".\n", out);
	}
	fputs(".SH SETTINGS\n"
	      "Every setting is a flag \\fB\\-\\-\\fIname\\fR and an environment variable\n"
	      "\\fBSMTPD_\\fINAME\\fR; a flag wins over the environment.\n"
	      "\\fBSMTPD_\\fINAME\\fB_FILE\\fR=\\fIpath\\fR reads the value from a file instead\n"
	      "(one trailing newline stripped); giving both is an error. An empty value means\n"
	      "the default. BOOL is 1/true/yes/on or 0/false/no/off; SIZE is bytes or a number\n"
	      "with K, M or G (powers of 1024); DURATION is seconds or a number with s, m or h.\n"
	      "Under systemd, the settings are read from\n"
	      ".IR /etc/default/mailport .\n",
	      out);
	for (size_t i = 0; i < config_settings_count; i++) {
		const struct config_setting *s = &config_settings[i];
		char meta[CONFIG_WHY_MAX];
		config_metavar(s, meta, sizeof meta);
		fputs(".TP\n\\fB\\-\\-", out);
		config_roff(out, s->name, false);
		fputs("\\fR \\fI", out);
		config_roff(out, meta, false);
		fputs("\\fR, \\fB", out);
		config_roff(out, s->env, false);
		fputs("\\fR\n", out);
		config_roff(out, s->help, true);
		fputs("\n.br\nDefault: ", out);
		config_roff(out, config_default_text(s), false);
		if (s->image_def != NULL) {
			fputs("; in the container image: ", out);
			config_roff(out, s->image_def, false);
		}
		fputs(".\n", out);
	}
	fputs(".SH SIGNALS\n"
	      ".TP\n.B SIGTERM, SIGINT\n"
	      "Close the listeners, answer idle sessions 421 4.3.2, let open transactions\n"
	      "finish within SMTPD_SHUTDOWN_GRACE, then exit 0.\n"
	      ".TP\n.B SIGHUP\n"
	      "Reload the TLS certificate and the AUTH users file.\n"
	      ".SH EXIT STATUS\n"
	      ".TP\n.B 0\nStopped by a signal after a clean drain, or an action succeeded.\n"
	      ".TP\n.B 1\nA runtime failure that a restart may fix (a resolver failure,"
	      " a failed bind, an unready service for \\fB\\-\\-healthcheck\\fR).\n"
	      ".TP\n.B 2\nA configuration error; the one\\-line message names the variable.\n"
	      ".SH FILES\n"
	      ".TP\n.I /etc/default/mailport\n"
	      "Settings read by \\fBmailport.service\\fR (every setting, commented out).\n"
	      ".TP\n.I /var/lib/mailport\n"
	      "The spool under systemd (StateDirectory=mailport): new/, cur/, tmp/, meta/.\n"
	      ".SH SEE ALSO\n"
	      ".BR systemd.exec (5),\n"
	      ".BR postfix (1)\n",
	      out);
}

void config_print_envfile(FILE *out)
{
	fputs("# /etc/default/mailport: settings of mailport(8), read by mailport.service\n"
	      "# (systemd EnvironmentFile syntax: VAR=value, no shell expansion).\n"
	      "# Every setting is listed, commented out at its default; uncomment to change.\n"
	      "# An empty value means the default. SMTPD_X_FILE=/path reads a value from a\n"
	      "# file (for secrets). Under systemd the spool is /var/lib/mailport\n"
	      "# (the unit sets SMTPD_SPOOL); `mailport --help` explains every value.\n",
	      out);
	for (size_t i = 0; i < config_settings_count; i++) {
		const struct config_setting *s = &config_settings[i];
		char meta[CONFIG_WHY_MAX];
		config_metavar(s, meta, sizeof meta);
		fputs("\n", out);
		char text[2 * CONFIG_WHY_MAX];
		snprintf(text, sizeof text, "%s (%s; default %s)", s->help, meta,
		         config_default_text(s));
		config_wrap(out, "# ", text);
		fprintf(out, "#%s=%s\n", s->env, s->def);
	}
}
