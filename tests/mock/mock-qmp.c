/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The scripted QMP monitor: see mock-qmp.h for the script language. */
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <json-c/json.h>

#include "mock-qmp.h"
#include "mock-util.h"

#define WAIT_MS 10000   /* what a sequential script waits for a client */
#define SLICE_MS 100    /* how often a waiting play looks for the end */
#define MAX_CMDS 64

enum op {
	OP_ACCEPT, OP_GREET, OP_CAPS, OP_EXPECT, OP_ANSWER, OP_ERROR,
	OP_EVENT, OP_SEND, OP_SENDRAW, OP_SLOW, OP_FLOOD, OP_NEST,
	OP_ANSWER_ALL, OP_SERVE, OP_HOLD, OP_WAIT_EOF, OP_CLOSE, OP_SLEEP,
	OP_LABEL, OP_AGAIN, OP_SYNC,
};

static const char *const op_names[] = {
	"accept", "greet", "caps", "expect", "answer", "error", "event",
	"send", "sendraw", "slow", "flood", "nest", "answer-all", "serve",
	"hold", "wait-eof", "close", "sleep", "label", "again", "sync",
};

struct step {
	enum op op;
	char *arg;   /* the rest of the line; TEXT unescaped */
	size_t len;  /* of arg */
	long n1, n2; /* numbers: slow MS N, flood N, nest N, sleep MS */
};

struct rule {
	struct rule *next;
	char *name, *arg;       /* arg: NULL, or the argument it needs */
	char *action;           /* return JSON | error CLASS DESC | copy A F */
};

struct count {
	struct count *next;
	char *name;
	int n;
};

struct cmd {
	char *id;   /* JSON text */
	char *args; /* JSON text, "{}" without arguments */
	bool answered;
};

/* One play of the script, on one connection (or, sequentially, several). */
struct play {
	struct mock_qmp *m;
	pthread_t thread;
	int fd;
	char buf[65536];
	size_t len;
	struct cmd cmds[MAX_CMDS];
	size_t ncmds;
	size_t pc;
	bool done; /* ran to the end */
};

struct mock_qmp {
	char *path;
	int lfd;
	int flags;
	struct step *steps;
	size_t nsteps;
	pthread_mutex_t lock; /* rules, counts, plays, log, failed */
	struct rule *rules;
	struct count *counts;
	struct play **plays;
	size_t nplays;
	int accepted;
	bool failed;
	volatile bool stopping;
	FILE *log;
	pthread_t acceptor;
};

static void logf_(struct mock_qmp *m, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void logf_(struct mock_qmp *m, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (m->log) {
		flockfile(m->log);
		vfprintf(m->log, fmt, ap);
		fputc('\n', m->log);
		fflush(m->log);
		funlockfile(m->log);
	}
	va_end(ap);
}

static void fail(struct play *p, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void fail(struct play *p, const char *fmt, ...)
{
	char what[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&p->m->lock);
	p->m->failed = true;
	fprintf(stderr, "mock-qmp %s: step %zu: %s\n", p->m->path, p->pc + 1,
		what);
	logf_(p->m, "failed: step %zu: %s", p->pc + 1, what);
	pthread_mutex_unlock(&p->m->lock);
}

/* ---- the script ---- */

static void parse_rule(struct mock_qmp *m, const char *text)
{
	struct rule *r = mock_xalloc(sizeof(*r));
	const char *sp = strchr(text, ' ');
	char *plus;

	if (!sp) {
		fprintf(stderr, "mock-qmp: bad rule: %s\n", text);
		abort();
	}
	r->name = strndup(text, (size_t)(sp - text));
	r->action = mock_xstrdup(sp + 1);
	if ((plus = strchr(r->name, '+'))) {
		*plus = 0;
		r->arg = mock_xstrdup(plus + 1);
	}
	pthread_mutex_lock(&m->lock);
	r->next = m->rules;
	m->rules = r;
	pthread_mutex_unlock(&m->lock);
}

static void parse(struct mock_qmp *m, const char *script)
{
	char *copy = mock_xstrdup(script), *save = NULL;

	for (char *line = strtok_r(copy, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		struct step s = { 0 };
		const char *rest;
		size_t n, i;

		while (*line == ' ' || *line == '\t')
			line++;
		if (!*line || *line == '#')
			continue;
		n = strcspn(line, " ");
		rest = line[n] ? line + n + 1 : "";
		if (n == 2 && !strncmp(line, "on", 2)) {
			parse_rule(m, rest);
			continue;
		}
		for (i = 0; i < sizeof(op_names) / sizeof(*op_names); i++)
			if (strlen(op_names[i]) == n &&
			    !strncmp(line, op_names[i], n))
				break;
		if (i == sizeof(op_names) / sizeof(*op_names)) {
			fprintf(stderr, "mock-qmp: unknown step: %s\n", line);
			abort();
		}
		s.op = (enum op)i;
		if (s.op == OP_SLOW) {
			char *end;

			s.n1 = strtol(rest, &end, 10);
			s.n2 = strtol(end, &end, 10);
			rest = *end ? end + 1 : end;
			if (s.n2 < 1)
				s.n2 = 1;
		} else {
			s.n1 = atol(rest);
		}
		if (s.op == OP_SEND || s.op == OP_SENDRAW || s.op == OP_SLOW ||
		    s.op == OP_SYNC)
			s.arg = mock_unescape(rest, &s.len);
		else
			s.arg = mock_xstrdup(rest);
		if (s.op == OP_SEND || s.op == OP_SLOW) {
			s.arg = realloc(s.arg, s.len + 3);
			memcpy(s.arg + s.len, "\r\n", 3);
			s.len += 2;
		}
		if (s.op != OP_SEND && s.op != OP_SENDRAW && s.op != OP_SLOW &&
		    s.op != OP_SYNC)
			s.len = strlen(s.arg);
		m->steps = realloc(m->steps, (m->nsteps + 1) * sizeof(s));
		m->steps[m->nsteps++] = s;
	}
	free(copy);
}

/* ---- one connection ---- */

static bool sequential(struct play *p)
{
	return !(p->m->flags & MOCK_QMP_EACH);
}

/* Waits for input; false when the client hung up, the mock stops or (in a
 * sequential script) WAIT_MS passed. */
static bool fill(struct play *p)
{
	int64_t end = mock_now_ms() + WAIT_MS;
	ssize_t n;

	if (p->fd < 0 || p->len == sizeof(p->buf))
		return false;
	while (!mock_readable(p->fd, SLICE_MS)) {
		if (p->m->stopping ||
		    (sequential(p) && mock_now_ms() > end))
			return false;
	}
	n = recv(p->fd, p->buf + p->len, sizeof(p->buf) - p->len, 0);
	if (n <= 0)
		return false;
	p->len += (size_t)n;
	return true;
}

/* One line from the client (malloc'd), NULL if none comes. */
static char *read_line(struct play *p)
{
	for (;;) {
		char *nl = memchr(p->buf, '\n', p->len), *line;

		if (nl) {
			line = strndup(p->buf, (size_t)(nl - p->buf));
			p->len -= (size_t)(nl + 1 - p->buf);
			memmove(p->buf, nl + 1, p->len);
			if (p->m->flags & MOCK_QMP_AGENT) {
				char *w = line;

				for (char *r = line; *r; r++)
					if ((unsigned char)*r != 0xff)
						*w++ = *r;
				*w = '\0';
			}
			return line;
		}
		if (!fill(p))
			return NULL;
	}
}

static void send_text(struct play *p, const char *s, size_t n)
{
	if (p->fd >= 0)
		mock_send_all(p->fd, s, n);
}

static const char *last_id(struct play *p)
{
	return p->ncmds ? p->cmds[p->ncmds - 1].id : "0";
}

static void count(struct mock_qmp *m, const char *name)
{
	struct count *c;

	pthread_mutex_lock(&m->lock);
	for (c = m->counts; c && strcmp(c->name, name); c = c->next)
		;
	if (!c) {
		c = mock_xalloc(sizeof(*c));
		c->name = mock_xstrdup(name);
		c->next = m->counts;
		m->counts = c;
	}
	c->n++;
	logf_(m, "command %s", name);
	pthread_mutex_unlock(&m->lock);
}

/* Reads a command and records it; NULL at EOF. want: its name, "*" or NULL
 * (any). */
static json_object *read_cmd(struct play *p, const char *want)
{
	char *line = read_line(p);
	json_object *o = line ? json_tokener_parse(line) : NULL, *v;
	const char *name = NULL;

	if (o && json_object_object_get_ex(o, "execute", &v))
		name = json_object_get_string(v);
	if (!line) {
		if (sequential(p))
			fail(p, "expected %s, got nothing", want ? want : "a command");
		return NULL;
	}
	if (!name) {
		fail(p, "not a command: %s", line);
		free(line);
		json_object_put(o);
		return NULL;
	}
	count(p->m, name);
	if (want && strcmp(want, "*") && strcmp(want, name))
		fail(p, "expected %s, got %s", want, line);
	if (p->m->flags & MOCK_QMP_AGENT)
		v = NULL; /* an agent's commands carry no id */
	else if (!json_object_object_get_ex(o, "id", &v) ||
		 (sequential(p) && !json_object_is_type(v, json_type_int)))
		fail(p, "command without a numeric id: %s", line);
	if (p->ncmds == MAX_CMDS) {
		fail(p, "more than %d commands", MAX_CMDS);
	} else {
		struct cmd *c = &p->cmds[p->ncmds++];

		c->id = mock_xstrdup(v ? json_object_to_json_string(v) : "null");
		c->args = mock_xstrdup(json_object_object_get_ex(o, "arguments",
				       &v) ? json_object_to_json_string(v) : "{}");
	}
	free(line);
	return o;
}

/* Sends {"return": JSON, "id": ID} or the error, for the last command. */
static void reply(struct play *p, const char *ret, const char *cls,
		  const char *desc)
{
	json_object *o = json_object_new_object();
	json_object *e;
	const char *text;
	char *s;

	if (ret) {
		json_object_object_add(o, "return", json_tokener_parse(ret));
	} else {
		e = json_object_new_object();
		json_object_object_add(e, "class", json_object_new_string(cls));
		json_object_object_add(e, "desc", json_object_new_string(desc));
		json_object_object_add(o, "error", e);
	}
	if (p->ncmds) {
		if (!(p->m->flags & MOCK_QMP_AGENT))
			json_object_object_add(o, "id",
				json_tokener_parse(last_id(p)));
		p->cmds[p->ncmds - 1].answered = true;
	}
	text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	if (asprintf(&s, "%s\r\n", text) > 0) {
		send_text(p, s, strlen(s));
		free(s);
	}
	json_object_put(o);
}

/* "CLASS DESC" */
static void reply_error(struct play *p, const char *arg)
{
	size_t n = strcspn(arg, " ");
	char *cls = strndup(arg, n);

	reply(p, NULL, cls, arg[n] ? arg + n + 1 : "");
	free(cls);
}

static bool copy_file(struct play *p, json_object *cmd, const char *spec)
{
	json_object *args, *v;
	size_t n = strcspn(spec, " "), len = 0;
	char *arg = strndup(spec, n), *data;
	const char *to = NULL;
	FILE *f;
	bool ok = false;

	if (json_object_object_get_ex(cmd, "arguments", &args) &&
	    json_object_object_get_ex(args, arg, &v))
		to = json_object_get_string(v);
	data = to ? mock_read_file(spec + n + (spec[n] ? 1 : 0), &len) : NULL;
	if (data && (f = fopen(to, "wb"))) {
		ok = fwrite(data, 1, len, f) == len;
		ok = fclose(f) == 0 && ok;
	}
	free(data);
	free(arg);
	return ok;
}

/* serve: every command answered by the newest rule that matches it. */
static void serve(struct play *p)
{
	json_object *cmd;

	while ((cmd = read_cmd(p, NULL))) {
		json_object *v, *args;
		const char *name = "";
		char *action = NULL;

		if (json_object_object_get_ex(cmd, "execute", &v))
			name = json_object_get_string(v);
		if (!json_object_object_get_ex(cmd, "arguments", &args))
			args = NULL;
		pthread_mutex_lock(&p->m->lock);
		for (struct rule *r = p->m->rules; r; r = r->next) {
			if (strcmp(r->name, name) ||
			    (r->arg && !(args && json_object_object_get_ex(
					args, r->arg, NULL))))
				continue;
			action = mock_xstrdup(r->action);
			break;
		}
		pthread_mutex_unlock(&p->m->lock);
		if (!action && (p->m->flags & MOCK_QMP_AGENT) &&
		    !strcmp(name, "guest-sync-delimited")) {
			json_object *id = NULL;
			char *r;

			json_object_object_get_ex(args, "id", &id);
			if (asprintf(&r, "\xff{\"return\": %s}\r\n",
				     json_object_to_json_string(id)) > 0) {
				send_text(p, r, strlen(r));
				free(r);
			}
		} else if (!action && !strcmp(name, "qmp_capabilities")) {
			reply(p, "{}", NULL, NULL);
		} else if (!action) {
			char desc[300];

			snprintf(desc, sizeof(desc),
				 "The command %s has not been found", name);
			reply(p, NULL, "CommandNotFound", desc);
		} else if (!strncmp(action, "return ", 7)) {
			reply(p, action + 7, NULL, NULL);
		} else if (!strncmp(action, "error ", 6)) {
			reply_error(p, action + 6);
		} else if (!strncmp(action, "copy ", 5)) {
			if (copy_file(p, cmd, action + 5))
				reply(p, "{}", NULL, NULL);
			else
				reply(p, NULL, "GenericError", "cannot copy");
		} else {
			fail(p, "bad rule action: %s", action);
		}
		free(action);
		json_object_put(cmd);
	}
}

static void close_conn(struct play *p)
{
	pthread_mutex_lock(&p->m->lock);
	if (p->fd >= 0)
		close(p->fd);
	p->fd = -1;
	pthread_mutex_unlock(&p->m->lock);
	p->len = 0;
}

static void greet(struct play *p, const char *version)
{
	int major = 7, minor = 2, micro = 22;
	char *s;

	if (*version)
		sscanf(version, "%d.%d.%d", &major, &minor, &micro);
	if (asprintf(&s, "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": %d, "
		     "\"minor\": %d, \"major\": %d}, \"package\": \"mock\"}, "
		     "\"capabilities\": [\"oob\"]}}\r\n", micro, minor,
		     major) > 0) {
		send_text(p, s, strlen(s));
		free(s);
	}
}

static void send_step(struct play *p, const struct step *s)
{
	size_t n;
	char *text = mock_subst_id(s->arg, s->len, last_id(p), &n);

	if (strstr(s->arg, "$ID") && p->ncmds)
		p->cmds[p->ncmds - 1].answered = true;
	if (s->op != OP_SLOW) {
		send_text(p, text, n);
	} else {
		for (size_t off = 0; off < n && p->fd >= 0;
		     off += (size_t)s->n2) {
			size_t k = n - off < (size_t)s->n2 ? n - off :
				   (size_t)s->n2;

			if (!mock_send_all(p->fd, text + off, k))
				break;
			/* Stop when the client hung up meanwhile. */
			if (off + k < n && mock_readable(p->fd, (int)s->n1)) {
				char c;

				if (recv(p->fd, &c, 1, MSG_PEEK) <= 0)
					break;
				mock_sleep_ms((int)s->n1);
			}
		}
	}
	free(text);
}

static void run_step(struct play *p, const struct step *s)
{
	json_object *o;
	char *text;

	switch (s->op) {
	case OP_ACCEPT:
		close_conn(p);
		p->fd = mock_accept(p->m->lfd, WAIT_MS);
		if (p->fd < 0) {
			fail(p, "no client connected");
		} else {
			pthread_mutex_lock(&p->m->lock);
			p->m->accepted++;
			logf_(p->m, "accepted %d", p->m->accepted);
			pthread_mutex_unlock(&p->m->lock);
		}
		break;
	case OP_GREET:
		greet(p, s->arg);
		break;
	case OP_CAPS:
		if ((o = read_cmd(p, "qmp_capabilities"))) {
			reply(p, "{}", NULL, NULL);
			json_object_put(o);
		}
		break;
	case OP_EXPECT:
		json_object_put(read_cmd(p, s->arg));
		break;
	case OP_SYNC:
		if ((o = read_cmd(p, "guest-sync-delimited"))) {
			json_object *args, *id = NULL;
			char *r;

			json_object_object_get_ex(o, "arguments", &args);
			json_object_object_get_ex(args, "id", &id);
			send_text(p, s->arg, s->len);
			if (asprintf(&r, "\xff{\"return\": %s}\r\n",
				     json_object_to_json_string(id)) > 0) {
				send_text(p, r, strlen(r));
				free(r);
			}
			json_object_put(o);
		}
		break;
	case OP_ANSWER: {
		size_t n;

		text = mock_subst_id(s->arg, s->len, last_id(p), &n);
		reply(p, text, NULL, NULL);
		free(text);
		break;
	}
	case OP_ERROR:
		reply_error(p, s->arg);
		break;
	case OP_EVENT: {
		size_t n = strcspn(s->arg, " ");
		int64_t t = mock_now_ms();

		if (asprintf(&text, "{\"timestamp\": {\"seconds\": %lld, "
			     "\"microseconds\": %lld}, \"event\": \"%.*s\"%s%s}"
			     "\r\n", (long long)t / 1000,
			     (long long)(t % 1000) * 1000, (int)n, s->arg,
			     s->arg[n] ? ", \"data\": " : "",
			     s->arg[n] ? s->arg + n + 1 : "") > 0) {
			send_text(p, text, strlen(text));
			free(text);
		}
		break;
	}
	case OP_SEND:
	case OP_SENDRAW:
	case OP_SLOW:
		send_step(p, s);
		break;
	case OP_FLOOD:
	case OP_NEST: {
		static const size_t chunk = 65536;
		char *junk = mock_xalloc(chunk);
		int pass = s->op == OP_FLOOD ? 1 : 2;

		for (int k = 0; k < pass; k++) {
			memset(junk, s->op == OP_FLOOD ? 'x' : "[]"[k], chunk);
			for (size_t sent = 0; sent < (size_t)s->n1;
			     sent += chunk) {
				size_t n = (size_t)s->n1 - sent < chunk ?
					   (size_t)s->n1 - sent : chunk;

				if (p->fd < 0 || !mock_send_all(p->fd, junk, n))
					break; /* the client gave up */
			}
		}
		free(junk);
		break;
	}
	case OP_ANSWER_ALL:
		for (size_t i = p->ncmds; i-- > 0;) {
			struct cmd *c = &p->cmds[i];

			if (c->answered)
				continue;
			c->answered = true;
			if (asprintf(&text, "{\"return\": %s, \"id\": %s}\r\n",
				     c->args, c->id) > 0) {
				send_text(p, text, strlen(text));
				free(text);
			}
		}
		break;
	case OP_SERVE:
		serve(p);
		break;
	case OP_HOLD:
		while (p->fd >= 0 && !p->m->stopping) {
			char junk[4096];

			if (mock_readable(p->fd, SLICE_MS) &&
			    recv(p->fd, junk, sizeof(junk), 0) <= 0)
				break;
		}
		p->len = 0;
		break;
	case OP_WAIT_EOF: {
		char *line;

		while ((line = read_line(p))) {
			fail(p, "command after the script's end: %s", line);
			free(line);
		}
		break;
	}
	case OP_CLOSE:
		close_conn(p);
		break;
	case OP_SLEEP:
		mock_sleep_ms((int)s->n1);
		break;
	case OP_LABEL:
		break;
	case OP_AGAIN:
		while (p->pc > 0 && p->m->steps[p->pc].op != OP_LABEL)
			p->pc--;
		break;
	}
}

/* The mock stops: a play of each connection ends with it. */
static bool play_over(struct play *p)
{
	return p->m->stopping && !sequential(p);
}

static void *play_main(void *arg)
{
	struct play *p = arg;
	struct mock_qmp *m = p->m;

	for (p->pc = 0; p->pc < m->nsteps && !play_over(p); p->pc++) {
		run_step(p, &m->steps[p->pc]);
		if (sequential(p) && m->failed)
			return NULL;
		/* Each connection: a hang-up ends its play. */
		if (!sequential(p) && p->fd >= 0 && p->len == 0 &&
		    m->steps[p->pc].op != OP_LABEL && mock_readable(p->fd, 0)) {
			char c;

			if (recv(p->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0)
				return NULL;
		}
	}
	p->done = p->pc >= m->nsteps;
	return NULL;
}

static struct play *new_play(struct mock_qmp *m, int fd)
{
	struct play *p = mock_xalloc(sizeof(*p));

	p->m = m;
	p->fd = fd;
	pthread_mutex_lock(&m->lock);
	m->plays = realloc(m->plays, (m->nplays + 1) * sizeof(*m->plays));
	m->plays[m->nplays++] = p;
	pthread_mutex_unlock(&m->lock);
	return p;
}

static void *acceptor_main(void *arg)
{
	struct mock_qmp *m = arg;

	while (!m->stopping) {
		int fd = mock_accept(m->lfd, SLICE_MS);
		struct play *p;

		if (fd < 0)
			continue;
		pthread_mutex_lock(&m->lock);
		m->accepted++;
		logf_(m, "accepted %d", m->accepted);
		pthread_mutex_unlock(&m->lock);
		p = new_play(m, fd);
		if (pthread_create(&p->thread, NULL, play_main, p) != 0)
			abort();
	}
	return NULL;
}

struct mock_qmp *mock_qmp_start(const char *path, const char *script,
				int flags, FILE *log)
{
	struct mock_qmp *m = mock_xalloc(sizeof(*m));

	m->log = log;
	pthread_mutex_init(&m->lock, NULL);
	m->path = mock_xstrdup(path);
	m->flags = flags;
	parse(m, script);
	m->lfd = mock_listen_unix(path);
	if (flags & MOCK_QMP_EACH) {
		if (pthread_create(&m->acceptor, NULL, acceptor_main, m))
			abort();
	} else {
		struct play *p = new_play(m, -1);

		if (pthread_create(&p->thread, NULL, play_main, p))
			abort();
	}
	return m;
}

void mock_qmp_rule(struct mock_qmp *m, const char *rule)
{
	parse_rule(m, rule);
}

void mock_qmp_drop(struct mock_qmp *m)
{
	pthread_mutex_lock(&m->lock);
	for (size_t i = 0; i < m->nplays; i++)
		if (m->plays[i]->fd >= 0)
			shutdown(m->plays[i]->fd, SHUT_RDWR);
	pthread_mutex_unlock(&m->lock);
}

int mock_qmp_accepted(struct mock_qmp *m)
{
	int n;

	pthread_mutex_lock(&m->lock);
	n = m->accepted;
	pthread_mutex_unlock(&m->lock);
	return n;
}

int mock_qmp_count(struct mock_qmp *m, const char *name)
{
	int n = 0;

	pthread_mutex_lock(&m->lock);
	for (struct count *c = m->counts; c; c = c->next)
		if (!strcmp(c->name, name))
			n = c->n;
	pthread_mutex_unlock(&m->lock);
	return n;
}

bool mock_qmp_finish(struct mock_qmp *m)
{
	bool ok;

	if (m->flags & MOCK_QMP_EACH) {
		m->stopping = true;
		pthread_join(m->acceptor, NULL);
		mock_qmp_drop(m);
	}
	for (size_t i = 0; i < m->nplays; i++) {
		struct play *p = m->plays[i];

		pthread_join(p->thread, NULL);
		if (!(m->flags & MOCK_QMP_EACH) && !p->done)
			fail(p, "script not finished");
		if (p->fd >= 0)
			close(p->fd);
		for (size_t k = 0; k < p->ncmds; k++) {
			free(p->cmds[k].id);
			free(p->cmds[k].args);
		}
		free(p);
	}
	ok = !m->failed;
	close(m->lfd);
	unlink(m->path);
	for (size_t i = 0; i < m->nsteps; i++)
		free(m->steps[i].arg);
	while (m->rules) {
		struct rule *r = m->rules;

		m->rules = r->next;
		free(r->name);
		free(r->arg);
		free(r->action);
		free(r);
	}
	while (m->counts) {
		struct count *c = m->counts;

		m->counts = c->next;
		free(c->name);
		free(c);
	}
	free(m->plays);
	free(m->steps);
	free(m->path);
	free(m);
	return ok;
}
