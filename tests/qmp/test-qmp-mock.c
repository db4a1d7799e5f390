/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The QMP client (lib/qmp.c) against a scripted mock monitor: a thread that
 * serves a UNIX socket, follows a script of expected commands and canned
 * replies, and fails the test on any command it did not expect. It covers
 * what a real QEMU will not do on demand; and statistics through hv.h
 * from answers of the wrong shapes.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "hv.h"
#include "mock-qmp.h"
#include "qmp.h"
#include "testutil.h"

/* A sequential mock at DIR/NAME.sock playing script. */
static struct mock_qmp *mock_start(const char *dir, const char *name,
				   const char *script, char *path, size_t n)
{
	snprintf(path, n, "%s/%s.sock", dir, name);
	return mock_qmp_start(path, script, 0, NULL);
}

/* The whole script must have run, and nothing unexpected came. */
static void mock_finish(struct mock_qmp *m)
{
	CHECK(mock_qmp_finish(m));
}

static struct qmp *client(const char *path)
{
	char addr[120];
	struct qmp *q = NULL;

	snprintf(addr, sizeof(addr), "unix:%s", path);
	REQUIRE(qmp_new(addr, &q) == 0);
	return q;
}

#define HELLO "accept\ngreet\ncaps\n"

_Static_assert(QMP_LINE_MAX + 1 == 8388609, "the flood below must be "
	       "one byte more than a QMP line may hold");

static void test_replies(const char *dir)
{
	static const char script[] =
		HELLO
		"expect foo\n"
		"error CommandNotFound The command foo has not been found\n"
		"expect query-status\n"
		"answer {\"status\": \"running\", \"singlestep\": false, "
		"\"running\": true}\n"
		"expect query-balloon\n"
		"error DeviceNotActive No balloon device has been activated\n"
		"expect human-monitor-command\n"
		"error GenericError bad\n"
		"expect quit\n"
		"send {\"timestamp\": {\"seconds\": 1, \"microseconds\": 2}, "
		"\"event\": \"SHUTDOWN\", \"data\": {\"guest\": false, "
		"\"reason\": \"host-qmp-quit\"}}\\r\\n"
		"{\"return\": {}, \"id\": $ID}\n"
		"close\n";
	struct seen seen = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct mock_qmp *m;
	char path[128];
	struct qmp *q;
	char *json = NULL, *err = NULL;
	int major = 0, minor = 0, micro = 0;

	m = mock_start(dir, "replies", script, path, sizeof(path));
	q = client(path);
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
	mock_finish(m);
	for (int i = 0; i < 100 && qmp_is_connected(q); i++)
		test_sleep_ms(10);
	CHECK(!qmp_is_connected(q));
	qmp_free(q);
	CHECK(STREQ(seen.names, "SHUTDOWN "));
	CHECK(seen_lost(&seen) == 1);
}

static void test_event_before_reply(const char *dir)
{
	static const char script[] =
		HELLO
		"expect stop\n"
		"event STOP\n"
		/* an event and the reply in pieces of 20 bytes, 30 ms apart */
		"slow 30 20 {\"timestamp\": {\"seconds\": 1, "
		"\"microseconds\": 3}, \"event\": \"X\", \"data\": {\"a\": 1}}"
		"\\r\\n{\"return\": {}, \"id\": $ID}\n"
		"wait-eof\n";
	struct seen seen = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct mock_qmp *m;
	char path[128];
	struct qmp *q;
	char *json = NULL;

	m = mock_start(dir, "event", script, path, sizeof(path));
	q = client(path);
	qmp_set_event_handler(q, seen_on_event, &seen);
	CHECK(qmp_execute(q, "stop", NULL, 2000, &json, NULL) == 0);
	CHECK(STREQ(json, "{}"));
	free(json);
	/* The events came before the reply, on the same thread. */
	pthread_mutex_lock(&seen.lock);
	CHECK(STREQ(seen.names, "STOP X "));
	pthread_mutex_unlock(&seen.lock);
	qmp_free(q);
	mock_finish(m);
	CHECK(seen_lost(&seen) == 0); /* our own close is not a loss */
}

static void test_split_greeting_and_reply(const char *dir)
{
	static const char script[] =
		"accept\n"
		"slow 30 20 {\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, "
		"\"minor\": 2, \"major\": 7}, \"package\": \"mock\"}, "
		"\"capabilities\": [\"oob\"]}}\n"
		"expect qmp_capabilities\n"
		"slow 30 20 {\"return\": {}, \"id\": $ID}\n"
		"expect query-name\n"
		"slow 30 20 {\"return\": {\"name\": \"vm1\"}, \"id\": $ID}\n"
		"wait-eof\n";
	struct mock_qmp *m;
	char path[128];
	struct qmp *q;
	char *json = NULL;

	m = mock_start(dir, "split", script, path, sizeof(path));
	q = client(path);
	CHECK(qmp_execute(q, "query-name", NULL, 3000, &json, NULL) == 0);
	CHECK(STREQ(json, "{\"name\":\"vm1\"}"));
	free(json);
	qmp_free(q);
	mock_finish(m);
}

static void test_close_mid_command(const char *dir)
{
	static const char script[] =
		HELLO
		"expect query-status\n"
		"close\n"
		/* The next call reconnects. */
		HELLO
		"expect query-status\n"
		"answer {\"status\": \"paused\"}\n"
		"wait-eof\n";
	struct seen seen = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct mock_qmp *m;
	char path[128];
	struct qmp *q;
	char *json = NULL, *err = NULL;

	m = mock_start(dir, "close", script, path, sizeof(path));
	q = client(path);
	qmp_set_event_handler(q, seen_on_event, &seen);
	CHECK(qmp_execute(q, "query-status", NULL, 2000, &json, &err) ==
	      -ENOTCONN);
	CHECK(json == NULL && err != NULL);
	free(err);
	CHECK(qmp_execute(q, "query-status", NULL, 2000, &json, NULL) == 0);
	CHECK(STREQ(json, "{\"status\":\"paused\"}"));
	free(json);
	qmp_free(q);
	mock_finish(m);
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
	static const char script[] =
		"accept\n"
		"sleep 700\n"   /* silent past the client's deadline */
		"greet\n"       /* late: the sign of life */
		HELLO           /* the client starts afresh */
		"expect query-status\n"
		"answer {\"status\": \"running\"}\n"
		"wait-eof\n";
	struct mock_qmp *m;
	char path[128];
	struct qmp *q;
	char *err = NULL, *json = NULL;
	int64_t t0;

	m = mock_start(dir, "silent", script, path, sizeof(path));
	q = client(path);
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
	mock_finish(m);
}

static void test_garbage(const char *dir)
{
	static const char script[] =
		HELLO
		"expect query-status\n"
		"send this is not JSON\n"
		"wait-eof\n"
		/* An over-long line: refused without holding it all. */
		HELLO
		"expect query-status\n"
		"flood 8388609\n" /* QMP_LINE_MAX + 1, asserted below */
		"wait-eof\n"
		/* A greeting that is garbage. */
		"accept\n"
		"send {\"QMP\": 1}\n"
		"wait-eof\n";
	struct seen seen = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct mock_qmp *m;
	char path[128];
	struct qmp *q;
	char *err = NULL;

	m = mock_start(dir, "garbage", script, path, sizeof(path));
	q = client(path);
	qmp_set_event_handler(q, seen_on_event, &seen);
	CHECK(qmp_execute(q, "query-status", NULL, 2000, NULL, &err) ==
	      -EPROTO);
	CHECK(err != NULL);
	free(err);
	CHECK(qmp_execute(q, "query-status", NULL, 5000, NULL, NULL) ==
	      -EPROTO);
	CHECK(qmp_execute(q, "query-status", NULL, 2000, NULL, NULL) ==
	      -EPROTO);
	mock_finish(m);
	qmp_free(q);
	CHECK(seen_lost(&seen) == 2);
}

static void test_wrong_id(const char *dir)
{
	static const char script[] =
		HELLO
		"expect query-status\n"
		"send {\"return\": {}, \"id\": 99$ID}\\r\\n"
		"{\"return\": {}, \"id\": \"x\"}\\r\\n{\"return\": {}}\n"
		/* Past the client's deadline: the late reply, a sign of life
		 * (callers in between failed at once and sent nothing). */
		"sleep 700\n"
		"answer {\"late\": 1}\n"
		"expect query-name\n"
		"answer {\"name\": \"a\"}\n"
		"wait-eof\n";
	struct mock_qmp *m;
	char path[128];
	struct qmp *q;
	char *json = NULL;
	int64_t t0;

	m = mock_start(dir, "wrongid", script, path, sizeof(path));
	q = client(path);
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
	mock_finish(m);
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
	static const char script[] =
		HELLO
		"expect echo\nexpect echo\nexpect echo\nexpect echo\n"
		"expect echo\nexpect echo\nexpect echo\nexpect echo\n"
		"answer-all\n" /* newest first: ids must route them */
		"wait-eof\n";
	struct worker w[THREADS];
	pthread_t t[THREADS];
	struct mock_qmp *m;
	char path[128];
	struct qmp *q;
	char want[32];

	m = mock_start(dir, "threads", script, path, sizeof(path));
	q = client(path);
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
	mock_finish(m);
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
	static const char script[] =
		HELLO
		"expect query-status\n"
		"answer {\"status\": null, \"running\": true}\n"
		"expect query-balloon\n"
		"answer {\"actual\": \"lots\"}\n"
		"expect query-memory-size-summary\n"
		"answer []\n"
		"expect query-cpus-fast\n"
		"answer [{\"cpu-index\": \"x\", \"thread-id\": -1}, "
		"{\"cpu-index\": 0, \"thread-id\": 999999999, "
		"\"qom-path\": \"/c0\"}]\n"
		"expect query-hotpluggable-cpus\n"
		"answer {\"a\": 1}\n"
		"expect query-stats-schemas\n"
		"answer [{\"target\": null, \"stats\": 5}, {\"target\": \"vm\", "
		"\"stats\": [{\"name\": null}, {\"name\": \"exits\", "
		"\"type\": \"cumulative\"}, {\"name\": \"h\", \"type\": "
		"\"log2-histogram\"}, {\"name\": \"bad key\", \"type\": "
		"\"peak\"}]}, {\"target\": \"vcpu\", \"stats\": [{\"name\": "
		"\"halt\", \"type\": \"instant\"}]}]\n"
		"expect query-stats\n"
		"answer [{\"qom-path\": null, \"stats\": []}, {\"qom-path\": "
		"\"/c0\", \"stats\": [{\"name\": \"halt\", \"value\": 7}]}]\n"
		"expect query-block\n"
		"answer [{\"device\": null}]\n"
		"expect query-blockstats\n"
		"answer [{\"device\": 5, \"qdev\": \"\", \"node-name\": \"n1\", "
		"\"stats\": {\"rd_bytes\": \"x\", \"wr_bytes\": 10}}, "
		"{\"stats\": null}]\n"
		"expect query-stats\n"
		"answer [{\"stats\": [{\"name\": \"exits\", \"value\": 42}, "
		"{\"name\": \"h\", \"value\": [1, 2]}, {\"name\": \"bad key\", "
		"\"value\": 1}]}, 7]\n"
		"wait-eof\n";
	struct mock_qmp *m;
	char path[128];
	struct hv_conn *c = NULL;
	struct hv_stats *st = NULL;
	char uri[160], *err = NULL;
	const struct hv_stat *k;

	m = mock_start(dir, "stats", script, path, sizeof(path));
	snprintf(uri, sizeof(uri), "qmp:h=unix:%s", path);
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
	mock_finish(m);
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
