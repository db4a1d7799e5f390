/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The QMP client (lib/qmp.c) against a scripted mock monitor: a thread that
 * serves a UNIX socket, follows a script of expected commands and canned
 * replies, and fails the test on any command it did not expect. It covers
 * what a real QEMU will not do on demand; and statistics through hv.h
 * from answers of the wrong shapes.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <json-c/json.h>

#include "hv.h"
#include "qmp.h"
#include "testutil.h"

#define GREETING                                                             \
	"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, "  \
	"\"major\": 7}, \"package\": \"mock\"}, \"capabilities\": "          \
	"[\"oob\"]}}\r\n"
#define MOCK_WAIT_MS 10000
#define MAX_CMDS 64

enum op {
	OP_GREET,       /* send the greeting */
	OP_EXPECT,      /* read one command; its "execute" must be arg */
	OP_SEND,        /* send arg; $ID is the last command's id */
	OP_SEND_SLOW,   /* the same in three pieces, 30 ms apart */
	OP_ANSWER_ALL,  /* answer every unanswered command, newest first,
			 * with its own arguments */
	OP_CLOSE,       /* close the connection */
	OP_ACCEPT,      /* accept the next connection */
	OP_WAIT_EOF,    /* wait until the client closes */
	OP_FLOOD,       /* send QMP_LINE_MAX + 1 bytes without a newline */
	OP_SLEEP,       /* stay silent for atoi(arg) ms */
	OP_END,
};

struct step {
	enum op op;
	const char *arg;
};

struct cmd {
	int64_t id;
	char *args; /* JSON text, "{}" without arguments */
	bool answered;
};

struct mock {
	char path[108];
	int lfd, cfd;
	const struct step *script;
	size_t pc;          /* steps done */
	bool failed;
	pthread_t thread;
	char buf[65536];
	size_t len;
	struct cmd cmds[MAX_CMDS];
	size_t ncmds;
};

static void mock_fail(struct mock *m, const char *what)
{
	fprintf(stderr, "mock: step %zu: %s\n", m->pc, what);
	m->failed = true;
}

static bool send_str(struct mock *m, const char *s, size_t len)
{
	while (len > 0) {
		ssize_t n = send(m->cfd, s, len, MSG_NOSIGNAL);

		if (n < 0)
			return false;
		s += n;
		len -= (size_t)n;
	}
	return true;
}

/* One line from the client, NUL-terminated in *ret (malloc'd); NULL on EOF
 * or after MOCK_WAIT_MS. */
static char *read_line(struct mock *m)
{
	struct pollfd p = { .fd = m->cfd, .events = POLLIN };
	char *nl, *line;
	ssize_t n;

	for (;;) {
		nl = memchr(m->buf, '\n', m->len);
		if (nl) {
			line = strndup(m->buf, (size_t)(nl - m->buf));
			m->len -= (size_t)(nl + 1 - m->buf);
			memmove(m->buf, nl + 1, m->len);
			return line;
		}
		if (m->len == sizeof(m->buf) || poll(&p, 1, MOCK_WAIT_MS) <= 0)
			return NULL;
		n = recv(m->cfd, m->buf + m->len, sizeof(m->buf) - m->len, 0);
		if (n <= 0)
			return NULL;
		m->len += (size_t)n;
	}
}

static void expect(struct mock *m, const char *name)
{
	char *line = read_line(m);
	json_object *o = line ? json_tokener_parse(line) : NULL;
	json_object *v;
	struct cmd *c;

	if (!o || !json_object_object_get_ex(o, "execute", &v) ||
	    strcmp(json_object_get_string(v), name) != 0) {
		fprintf(stderr, "mock: expected %s, got %s\n", name,
			line ? line : "(nothing)");
		mock_fail(m, "unexpected command");
	} else if (m->ncmds == MAX_CMDS ||
		   !json_object_object_get_ex(o, "id", &v) ||
		   !json_object_is_type(v, json_type_int)) {
		mock_fail(m, "command without a numeric id");
	} else {
		c = &m->cmds[m->ncmds++];
		c->id = json_object_get_int64(v);
		c->args = strdup(json_object_object_get_ex(o, "arguments", &v) ?
				 json_object_to_json_string(v) : "{}");
		c->answered = false;
	}
	json_object_put(o);
	free(line);
}

/* Replaces $ID with the last command's id (the first $ID only). */
static char *expand(struct mock *m, const char *tmpl)
{
	const char *at = strstr(tmpl, "$ID");
	long long id = m->ncmds ? (long long)m->cmds[m->ncmds - 1].id : 0;
	char *s;

	if (!at)
		return strdup(tmpl);
	if (m->ncmds)
		m->cmds[m->ncmds - 1].answered = true;
	if (asprintf(&s, "%.*s%lld%s", (int)(at - tmpl), tmpl, id, at + 3) < 0)
		return NULL;
	return s;
}

static void run_step(struct mock *m, const struct step *s)
{
	char *text;
	size_t len;

	switch (s->op) {
	case OP_GREET:
		send_str(m, GREETING, strlen(GREETING));
		break;
	case OP_EXPECT:
		expect(m, s->arg);
		break;
	case OP_SEND:
	case OP_SEND_SLOW:
		text = expand(m, s->arg);
		len = strlen(text);
		if (s->op == OP_SEND) {
			send_str(m, text, len);
		} else {
			for (size_t off = 0; off < len; off += len / 3 + 1) {
				size_t n = len - off < len / 3 + 1 ?
					   len - off : len / 3 + 1;

				send_str(m, text + off, n);
				test_sleep_ms(30);
			}
		}
		free(text);
		break;
	case OP_ANSWER_ALL:
		for (size_t i = m->ncmds; i-- > 0;) {
			struct cmd *c = &m->cmds[i];

			if (c->answered)
				continue;
			c->answered = true;
			if (asprintf(&text, "{\"return\": %s, \"id\": %lld}\r\n",
				     c->args, (long long)c->id) >= 0) {
				send_str(m, text, strlen(text));
				free(text);
			}
		}
		break;
	case OP_CLOSE:
		close(m->cfd);
		m->cfd = -1;
		m->len = 0;
		break;
	case OP_ACCEPT: {
		struct pollfd p = { .fd = m->lfd, .events = POLLIN };

		if (m->cfd >= 0)
			close(m->cfd);
		m->len = 0;
		m->cfd = -1;
		if (poll(&p, 1, MOCK_WAIT_MS) == 1)
			m->cfd = accept4(m->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (m->cfd < 0)
			mock_fail(m, "no client connected");
		break;
	}
	case OP_WAIT_EOF: {
		char *line;

		while ((line = read_line(m))) {
			fprintf(stderr, "mock: unexpected: %s\n", line);
			mock_fail(m, "command after the script's end");
			free(line);
		}
		break;
	}
	case OP_FLOOD: {
		static char junk[65536];

		memset(junk, 'x', sizeof(junk));
		for (size_t sent = 0; sent <= QMP_LINE_MAX;
		     sent += sizeof(junk))
			if (!send_str(m, junk, sizeof(junk)))
				break; /* the client gave up: that is the point */
		break;
	}
	case OP_SLEEP:
		test_sleep_ms(atoi(s->arg));
		break;
	case OP_END:
		break;
	}
}

static void *mock_main(void *arg)
{
	struct mock *m = arg;

	for (; m->script[m->pc].op != OP_END && !m->failed; m->pc++)
		run_step(m, &m->script[m->pc]);
	return NULL;
}

static void mock_start(struct mock *m, const char *dir, const char *name,
		       const struct step *script)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };

	memset(m, 0, sizeof(*m));
	m->cfd = -1;
	m->script = script;
	snprintf(m->path, sizeof(m->path), "%s/%s.sock", dir, name);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", m->path);
	m->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	REQUIRE(m->lfd >= 0);
	REQUIRE(bind(m->lfd, (struct sockaddr *)&sun, sizeof(sun)) == 0);
	REQUIRE(listen(m->lfd, 4) == 0);
	REQUIRE(pthread_create(&m->thread, NULL, mock_main, m) == 0);
}

/* Joins the mock; the whole script must have run. */
static void mock_finish(struct mock *m)
{
	pthread_join(m->thread, NULL);
	if (m->script[m->pc].op != OP_END)
		mock_fail(m, "script not finished");
	CHECK(!m->failed);
	if (m->cfd >= 0)
		close(m->cfd);
	close(m->lfd);
	unlink(m->path);
	for (size_t i = 0; i < m->ncmds; i++)
		free(m->cmds[i].args);
}

static struct qmp *client(struct mock *m)
{
	char addr[120];
	struct qmp *q = NULL;

	snprintf(addr, sizeof(addr), "unix:%s", m->path);
	REQUIRE(qmp_new(addr, &q) == 0);
	return q;
}

#define CAPS { OP_EXPECT, "qmp_capabilities" }, \
	     { OP_SEND, "{\"return\": {}, \"id\": $ID}\r\n" }

static void test_replies(const char *dir)
{
	static const struct step script[] = {
		{ OP_ACCEPT, NULL }, { OP_GREET, NULL }, CAPS,
		{ OP_EXPECT, "foo" },
		{ OP_SEND, "{\"id\": $ID, \"error\": {\"class\": "
			   "\"CommandNotFound\", \"desc\": \"The command foo "
			   "has not been found\"}}\r\n" },
		{ OP_EXPECT, "query-status" },
		{ OP_SEND, "{\"return\": {\"status\": \"running\", "
			   "\"singlestep\": false, \"running\": true}, "
			   "\"id\": $ID}\r\n" },
		{ OP_EXPECT, "query-balloon" },
		{ OP_SEND, "{\"id\": $ID, \"error\": {\"class\": "
			   "\"DeviceNotActive\", \"desc\": \"No balloon "
			   "device has been activated\"}}\r\n" },
		{ OP_EXPECT, "human-monitor-command" },
		{ OP_SEND, "{\"id\": $ID, \"error\": {\"class\": "
			   "\"GenericError\", \"desc\": \"bad\"}}\r\n" },
		{ OP_EXPECT, "quit" },
		{ OP_SEND, "{\"timestamp\": {\"seconds\": 1, \"microseconds\": "
			   "2}, \"event\": \"SHUTDOWN\", \"data\": {\"guest\": "
			   "false, \"reason\": \"host-qmp-quit\"}}\r\n"
			   "{\"return\": {}, \"id\": $ID}\r\n" },
		{ OP_CLOSE, NULL },
		{ OP_END, NULL },
	};
	struct seen seen = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct mock m;
	struct qmp *q;
	char *json = NULL, *err = NULL;
	int major = 0, minor = 0, micro = 0;

	mock_start(&m, dir, "replies", script);
	q = client(&m);
	qmp_set_event_handler(q, seen_on_event, &seen);
	CHECK(qmp_version(q, &major, &minor, &micro) == -ENOTCONN);
	CHECK(!qmp_is_connected(q));

	CHECK(qmp_execute(q, "foo", NULL, 2000, &json, &err) == -EOPNOTSUPP);
	CHECK(json == NULL);
	CHECK(STREQ(err, "The command foo has not been found"));
	free(err);
	err = NULL;
	CHECK(qmp_is_connected(q));
	CHECK(qmp_version(q, &major, &minor, &micro) == 0);
	CHECK(major == 7 && minor == 2 && micro == 22);

	CHECK(qmp_execute(q, "query-status", NULL, 2000, &json, &err) == 0);
	CHECK(STREQ(json, "{\"status\":\"running\",\"singlestep\":false,"
			  "\"running\":true}"));
	CHECK(err == NULL);
	free(json);
	json = NULL;

	CHECK(qmp_execute(q, "query-balloon", NULL, 2000, NULL, &err) ==
	      -ENODEV);
	CHECK(STREQ(err, "No balloon device has been activated"));
	free(err);
	err = NULL;

	/* The raw form: the error is the reply, not a failure; our id wins. */
	CHECK(qmp_execute_json(q, "{\"execute\": \"human-monitor-command\", "
			       "\"arguments\": {\"command-line\": \"x\"}, "
			       "\"id\": \"mine\"}", 2000, &json, &err) == 0);
	CHECK(STREQ(json, "{\"error\": {\"class\":\"GenericError\","
			  "\"desc\":\"bad\"}}"));
	free(json);
	json = NULL;

	/* Refused before anything is sent (the script would notice). */
	CHECK(qmp_execute_json(q, "[1]", 2000, &json, &err) == -EINVAL);
	free(err);
	err = NULL;
	CHECK(qmp_execute_json(q, "{\"arguments\": {}}", 2000, &json, NULL) ==
	      -EINVAL);
	CHECK(qmp_execute(q, "x", "{\"a\": ", 2000, &json, NULL) == -EINVAL);
	CHECK(qmp_execute(q, "x", "[]", 2000, &json, NULL) == -EINVAL);
	CHECK(json == NULL);

	/* quit: answered, then EOF; it succeeds and the loss is reported. */
	CHECK(qmp_execute(q, "quit", NULL, 2000, NULL, NULL) == 0);
	mock_finish(&m);
	for (int i = 0; i < 100 && qmp_is_connected(q); i++)
		test_sleep_ms(10);
	CHECK(!qmp_is_connected(q));
	qmp_free(q);
	CHECK(STREQ(seen.names, "SHUTDOWN "));
	CHECK(seen_lost(&seen) == 1);
}

static void test_event_before_reply(const char *dir)
{
	static const struct step script[] = {
		{ OP_ACCEPT, NULL }, { OP_GREET, NULL }, CAPS,
		{ OP_EXPECT, "stop" },
		{ OP_SEND, "{\"timestamp\": {\"seconds\": 1, \"microseconds\": "
			   "2}, \"event\": \"STOP\"}\r\n" },
		{ OP_SEND_SLOW, "{\"timestamp\": {\"seconds\": 1, "
				"\"microseconds\": 3}, \"event\": \"X\", "
				"\"data\": {\"a\": 1}}\r\n"
				"{\"return\": {}, \"id\": $ID}\r\n" },
		{ OP_WAIT_EOF, NULL },
		{ OP_END, NULL },
	};
	struct seen seen = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct mock m;
	struct qmp *q;
	char *json = NULL;

	mock_start(&m, dir, "event", script);
	q = client(&m);
	qmp_set_event_handler(q, seen_on_event, &seen);
	CHECK(qmp_execute(q, "stop", NULL, 2000, &json, NULL) == 0);
	CHECK(STREQ(json, "{}"));
	free(json);
	/* The events came before the reply, on the same thread. */
	pthread_mutex_lock(&seen.lock);
	CHECK(STREQ(seen.names, "STOP X "));
	pthread_mutex_unlock(&seen.lock);
	qmp_free(q);
	mock_finish(&m);
	CHECK(seen_lost(&seen) == 0); /* our own close is not a loss */
}

static void test_split_greeting_and_reply(const char *dir)
{
	static const struct step script[] = {
		{ OP_ACCEPT, NULL },
		{ OP_SEND_SLOW, GREETING },
		{ OP_EXPECT, "qmp_capabilities" },
		{ OP_SEND_SLOW, "{\"return\": {}, \"id\": $ID}\r\n" },
		{ OP_EXPECT, "query-name" },
		{ OP_SEND_SLOW, "{\"return\": {\"name\": \"vm1\"}, \"id\": "
				"$ID}\r\n" },
		{ OP_WAIT_EOF, NULL },
		{ OP_END, NULL },
	};
	struct mock m;
	struct qmp *q;
	char *json = NULL;

	mock_start(&m, dir, "split", script);
	q = client(&m);
	CHECK(qmp_execute(q, "query-name", NULL, 3000, &json, NULL) == 0);
	CHECK(STREQ(json, "{\"name\":\"vm1\"}"));
	free(json);
	qmp_free(q);
	mock_finish(&m);
}

static void test_close_mid_command(const char *dir)
{
	static const struct step script[] = {
		{ OP_ACCEPT, NULL }, { OP_GREET, NULL }, CAPS,
		{ OP_EXPECT, "query-status" },
		{ OP_CLOSE, NULL },
		/* The next call reconnects. */
		{ OP_ACCEPT, NULL }, { OP_GREET, NULL }, CAPS,
		{ OP_EXPECT, "query-status" },
		{ OP_SEND, "{\"return\": {\"status\": \"paused\"}, \"id\": "
			   "$ID}\r\n" },
		{ OP_WAIT_EOF, NULL },
		{ OP_END, NULL },
	};
	struct seen seen = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct mock m;
	struct qmp *q;
	char *json = NULL, *err = NULL;

	mock_start(&m, dir, "close", script);
	q = client(&m);
	qmp_set_event_handler(q, seen_on_event, &seen);
	CHECK(qmp_execute(q, "query-status", NULL, 2000, &json, &err) ==
	      -ENOTCONN);
	CHECK(json == NULL && err != NULL);
	free(err);
	CHECK(qmp_execute(q, "query-status", NULL, 2000, &json, NULL) == 0);
	CHECK(STREQ(json, "{\"status\":\"paused\"}"));
	free(json);
	qmp_free(q);
	mock_finish(&m);
	CHECK(seen_lost(&seen) == 1);
}

/* Retries cmd until it works or ms pass (fail-fast answers at once until the
 * peer shows a sign of life); returns the last result. */
static int execute_within(struct qmp *q, const char *cmd, int ms, char **json)
{
	int64_t end = test_now_ms() + ms;
	int r;

	while ((r = qmp_execute(q, cmd, NULL, 2000, json, NULL)) ==
		       -ETIMEDOUT && test_now_ms() < end)
		test_sleep_ms(20);
	return r;
}

/*
 * A monitor that accepts but does not greet (a stopped QEMU): one deadline,
 * then every caller fails at once, sending nothing, until the late greeting
 * shows a sign of life; then a fresh connection works.
 */
static void test_no_greeting(const char *dir)
{
	static const struct step script[] = {
		{ OP_ACCEPT, NULL },
		{ OP_SLEEP, "700" },   /* silent past the client's deadline */
		{ OP_GREET, NULL },    /* late: the sign of life */
		{ OP_ACCEPT, NULL },   /* the client starts afresh */
		{ OP_GREET, NULL }, CAPS,
		{ OP_EXPECT, "query-status" },
		{ OP_SEND, "{\"return\": {\"status\": \"running\"}, "
			   "\"id\": $ID}\r\n" },
		{ OP_WAIT_EOF, NULL },
		{ OP_END, NULL },
	};
	struct mock m;
	struct qmp *q;
	char *err = NULL, *json = NULL;
	int64_t t0;

	mock_start(&m, dir, "silent", script);
	q = client(&m);
	t0 = test_now_ms();
	CHECK(qmp_execute(q, "query-status", NULL, 300, NULL, &err) ==
	      -ETIMEDOUT);
	t0 = test_now_ms() - t0;
	CHECK(t0 >= 290 && t0 < 1500);
	CHECK(err != NULL);
	free(err);
	err = NULL;
	CHECK(!qmp_is_connected(q));
	/* Known unresponsive: at once, for every caller, nothing sent. */
	for (int i = 0; i < 5; i++) {
		t0 = test_now_ms();
		CHECK(qmp_execute(q, "query-status", NULL, 300, NULL, &err) ==
		      -ETIMEDOUT);
		CHECK(test_now_ms() - t0 < 100);
		CHECK(err && strstr(err, "not responding"));
		free(err);
		err = NULL;
	}
	CHECK(qmp_connect(q, 300, NULL) == -ETIMEDOUT);
	CHECK(execute_within(q, "query-status", 3000, &json) == 0);
	CHECK(json && strstr(json, "running"));
	free(json);
	qmp_free(q);
	mock_finish(&m);
}

static void test_garbage(const char *dir)
{
	static const struct step script[] = {
		{ OP_ACCEPT, NULL }, { OP_GREET, NULL }, CAPS,
		{ OP_EXPECT, "query-status" },
		{ OP_SEND, "this is not JSON\r\n" },
		{ OP_WAIT_EOF, NULL },
		/* An over-long line: refused without holding it all. */
		{ OP_ACCEPT, NULL }, { OP_GREET, NULL }, CAPS,
		{ OP_EXPECT, "query-status" },
		{ OP_FLOOD, NULL },
		{ OP_WAIT_EOF, NULL },
		/* A greeting that is garbage. */
		{ OP_ACCEPT, NULL },
		{ OP_SEND, "{\"QMP\": 1}\r\n" },
		{ OP_WAIT_EOF, NULL },
		{ OP_END, NULL },
	};
	struct seen seen = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct mock m;
	struct qmp *q;
	char *err = NULL;

	mock_start(&m, dir, "garbage", script);
	q = client(&m);
	qmp_set_event_handler(q, seen_on_event, &seen);
	CHECK(qmp_execute(q, "query-status", NULL, 2000, NULL, &err) ==
	      -EPROTO);
	CHECK(err != NULL);
	free(err);
	CHECK(qmp_execute(q, "query-status", NULL, 5000, NULL, NULL) ==
	      -EPROTO);
	CHECK(qmp_execute(q, "query-status", NULL, 2000, NULL, NULL) ==
	      -EPROTO);
	mock_finish(&m);
	qmp_free(q);
	CHECK(seen_lost(&seen) == 2);
}

static void test_wrong_id(const char *dir)
{
	static const struct step script[] = {
		{ OP_ACCEPT, NULL }, { OP_GREET, NULL }, CAPS,
		{ OP_EXPECT, "query-status" },
		{ OP_SEND, "{\"return\": {}, \"id\": 99$ID}\r\n"
			   "{\"return\": {}, \"id\": \"x\"}\r\n"
			   "{\"return\": {}}\r\n" },
		/* Past the client's deadline: the late reply, a sign of life
		 * (callers in between failed at once and sent nothing). */
		{ OP_SLEEP, "700" },
		{ OP_SEND, "{\"return\": {\"late\": 1}, \"id\": $ID}\r\n" },
		{ OP_EXPECT, "query-name" },
		{ OP_SEND, "{\"return\": {\"name\": \"a\"}, \"id\": $ID}\r\n" },
		{ OP_WAIT_EOF, NULL },
		{ OP_END, NULL },
	};
	struct mock m;
	struct qmp *q;
	char *json = NULL;
	int64_t t0;

	mock_start(&m, dir, "wrongid", script);
	q = client(&m);
	t0 = test_now_ms();
	CHECK(qmp_execute(q, "query-status", NULL, 400, &json, NULL) ==
	      -ETIMEDOUT);
	t0 = test_now_ms() - t0;
	CHECK(t0 >= 390 && t0 < 2000);
	CHECK(json == NULL);
	CHECK(qmp_is_connected(q)); /* a timeout keeps the connection */
	t0 = test_now_ms();
	CHECK(qmp_execute(q, "query-name", NULL, 2000, &json, NULL) ==
	      -ETIMEDOUT);
	CHECK(test_now_ms() - t0 < 100);
	CHECK(execute_within(q, "query-name", 3000, &json) == 0);
	CHECK(STREQ(json, "{\"name\":\"a\"}"));
	free(json);
	qmp_free(q);
	mock_finish(&m);
}

#define THREADS 8

struct worker {
	struct qmp *q;
	int k;
	int r;
	char *json;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	char args[32];

	snprintf(args, sizeof(args), "{\"k\": %d}", w->k);
	w->r = qmp_execute(w->q, "echo", args, 5000, &w->json, NULL);
	return NULL;
}

static void test_concurrent(const char *dir)
{
	static const struct step script[] = {
		{ OP_ACCEPT, NULL }, { OP_GREET, NULL }, CAPS,
		{ OP_EXPECT, "echo" }, { OP_EXPECT, "echo" },
		{ OP_EXPECT, "echo" }, { OP_EXPECT, "echo" },
		{ OP_EXPECT, "echo" }, { OP_EXPECT, "echo" },
		{ OP_EXPECT, "echo" }, { OP_EXPECT, "echo" },
		{ OP_ANSWER_ALL, NULL }, /* newest first: ids must route them */
		{ OP_WAIT_EOF, NULL },
		{ OP_END, NULL },
	};
	struct worker w[THREADS];
	pthread_t t[THREADS];
	struct mock m;
	struct qmp *q;
	char want[32];

	mock_start(&m, dir, "threads", script);
	q = client(&m);
	for (int i = 0; i < THREADS; i++) {
		w[i] = (struct worker){ .q = q, .k = i };
		REQUIRE(pthread_create(&t[i], NULL, worker_main, &w[i]) == 0);
	}
	for (int i = 0; i < THREADS; i++) {
		pthread_join(t[i], NULL);
		snprintf(want, sizeof(want), "{\"k\":%d}", i);
		CHECK(w[i].r == 0);
		CHECK(STREQ(w[i].json, want));
		free(w[i].json);
	}
	qmp_free(q);
	mock_finish(&m);
}

static void test_addresses(void)
{
	struct qmp *q = NULL;

	CHECK(qmp_new("unix:", &q) == -EINVAL);
	CHECK(qmp_new("tcp:host", &q) == -EINVAL);
	CHECK(qmp_new("tcp::1", &q) == -EINVAL);
	CHECK(qmp_new("tcp:host:", &q) == -EINVAL);
	CHECK(qmp_new("file:/x", &q) == -EINVAL);
	CHECK(q == NULL);
	CHECK(qmp_new("tcp:[::1]:4444", &q) == 0);
	CHECK(STREQ(qmp_address(q), "tcp:[::1]:4444"));
	q = qmp_free(q);
	CHECK(qmp_free(NULL) == NULL);

	/* Nobody listens: the connect error, at once. */
	CHECK(qmp_new("unix:/nonexistent/hvfs.sock", &q) == 0);
	CHECK(qmp_execute(q, "x", NULL, 1000, NULL, NULL) == -ENOENT);
	q = qmp_free(q);
	CHECK(qmp_new("tcp:127.0.0.1:1", &q) == 0);
	CHECK(qmp_connect(q, 1000, NULL) == -ECONNREFUSED);
	qmp_free(q);
}

/*
 * Statistics through hv.h from a monitor whose answers have the wrong
 * shapes: every value of the wrong type is left out, nothing crashes, and
 * what is right is kept. The mock is this process, so the QEMU is "local"
 * and its /proc is ours; the vCPU thread id is none of our tasks.
 */
static void test_stats_hostile(const char *dir)
{
#define R(json) { OP_SEND, "{\"return\": " json ", \"id\": $ID}\r\n" }
	static const struct step script[] = {
		{ OP_ACCEPT, NULL }, { OP_GREET, NULL }, CAPS,
		{ OP_EXPECT, "query-status" },
		R("{\"status\": null, \"running\": true}"),
		{ OP_EXPECT, "query-balloon" }, R("{\"actual\": \"lots\"}"),
		{ OP_EXPECT, "query-memory-size-summary" }, R("[]"),
		{ OP_EXPECT, "query-cpus-fast" },
		R("[{\"cpu-index\": \"x\", \"thread-id\": -1}, "
		  "{\"cpu-index\": 0, \"thread-id\": 999999999, "
		  "\"qom-path\": \"/c0\"}]"),
		{ OP_EXPECT, "query-hotpluggable-cpus" }, R("{\"a\": 1}"),
		{ OP_EXPECT, "query-stats-schemas" },
		R("[{\"target\": null, \"stats\": 5}, {\"target\": \"vm\", "
		  "\"stats\": [{\"name\": null}, {\"name\": \"exits\", "
		  "\"type\": \"cumulative\"}, {\"name\": \"h\", \"type\": "
		  "\"log2-histogram\"}, {\"name\": \"bad key\", \"type\": "
		  "\"peak\"}]}, {\"target\": \"vcpu\", \"stats\": [{\"name\": "
		  "\"halt\", \"type\": \"instant\"}]}]"),
		{ OP_EXPECT, "query-stats" },
		R("[{\"qom-path\": null, \"stats\": []}, {\"qom-path\": \"/c0\", "
		  "\"stats\": [{\"name\": \"halt\", \"value\": 7}]}]"),
		{ OP_EXPECT, "query-block" }, R("[{\"device\": null}]"),
		{ OP_EXPECT, "query-blockstats" },
		R("[{\"device\": 5, \"qdev\": \"\", \"node-name\": \"n1\", "
		  "\"stats\": {\"rd_bytes\": \"x\", \"wr_bytes\": 10}}, "
		  "{\"stats\": null}]"),
		{ OP_EXPECT, "query-stats" },
		R("[{\"stats\": [{\"name\": \"exits\", \"value\": 42}, "
		  "{\"name\": \"h\", \"value\": [1, 2]}, {\"name\": \"bad key\", "
		  "\"value\": 1}]}, 7]"),
		{ OP_WAIT_EOF, NULL }, { OP_END, NULL },
	};
#undef R
	struct mock m;
	struct hv_conn *c = NULL;
	struct hv_stats *st = NULL;
	char uri[160], *err = NULL;
	const struct hv_stat *k;

	mock_start(&m, dir, "stats", script);
	snprintf(uri, sizeof(uri), "qmp:h=unix:%s", m.path);
	REQUIRE(hv_open(uri, &(struct hv_options){ .timeout_ms = 5000 }, &c,
			&err) == 0);
	CHECK(hv_stats(c, "h", &st, &err) == 0);
	REQUIRE(st);
	CHECK(st->error == 0);
	k = hv_stats_find(st, "state.state");
	CHECK(k && k->v.i == HV_STATE_NOSTATE);
	CHECK(hv_stats_find(st, "cpu.time") != NULL);
	CHECK(!hv_stats_find(st, "balloon.current") &&
	      !hv_stats_find(st, "balloon.maximum"));
	k = hv_stats_find(st, "vcpu.current");
	CHECK(k && k->type == HV_STAT_UINT && k->v.ui == 2);
	CHECK(!hv_stats_find(st, "vcpu.maximum"));
	CHECK(hv_stats_find(st, "vcpu.0.state") &&
	      !hv_stats_find(st, "vcpu.0.time"));
	k = hv_stats_find(st, "vcpu.0.halt.cur");
	CHECK(k && k->v.ul == 7);
	k = hv_stats_find(st, "block.count");
	CHECK(k && k->v.ui == 2);
	k = hv_stats_find(st, "block.0.name");
	CHECK(k && STREQ(k->v.s, "n1"));
	CHECK(!hv_stats_find(st, "block.0.rd.bytes") &&
	      !hv_stats_find(st, "block.0.path") &&
	      !hv_stats_find(st, "block.1.name"));
	k = hv_stats_find(st, "block.0.wr.bytes");
	CHECK(k && k->v.ul == 10);
	k = hv_stats_find(st, "vm.exits.sum");
	CHECK(k && k->v.ul == 42);
	CHECK(!hv_stats_find(st, "vm.h.sum") && !hv_stats_find(st, "vm.h.max"));
	for (size_t i = 0; i < st->n; i++)
		CHECK(!strchr(st->stats[i].key, ' '));
	hv_stats_free(st, 1);
	hv_close(c);
	free(err);
	mock_finish(&m);
}

int main(void)
{
	const char *dir = test_init("qmp-mock");

	test_addresses();
	test_replies(dir);
	test_event_before_reply(dir);
	test_split_greeting_and_reply(dir);
	test_close_mid_command(dir);
	test_no_greeting(dir);
	test_garbage(dir);
	test_wrong_id(dir);
	test_concurrent(dir);
	test_stats_hostile(dir);
	return check_finish("test-qmp-mock");
}
