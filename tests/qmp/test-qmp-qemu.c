/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The QMP client against a real QEMU with two monitors: the client under test
 * on A, a second client on B to check the effects (a monitor serves one
 * client at a time).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "qmp.h"
#include "testutil.h"

static bool seen_has(struct seen *s, const char *name, int wait_ms)
{
	int64_t end = test_now_ms() + wait_ms;
	bool r;

	do {
		pthread_mutex_lock(&s->lock);
		r = strstr(s->names, name) != NULL;
		pthread_mutex_unlock(&s->lock);
		if (r)
			return true;
		test_sleep_ms(10);
	} while (test_now_ms() < end);
	return false;
}

/* "status" of query-status through q, malloc'd; NULL on failure. */
static char *status(struct qmp *q)
{
	char *json = NULL, *s = NULL;
	json_object *o, *v;

	if (qmp_execute(q, "query-status", NULL, 3000, &json, NULL) < 0)
		return NULL;
	o = json_tokener_parse(json);
	if (json_object_object_get_ex(o, "status", &v))
		s = strdup(json_object_get_string(v));
	json_object_put(o);
	free(json);
	return s;
}

static int get_int(json_object *o, const char *a, const char *b)
{
	json_object *v, *w;

	if (!json_object_object_get_ex(o, a, &v) ||
	    !json_object_object_get_ex(v, b, &w))
		return -1;
	return json_object_get_int(w);
}

#define CHECK_STATUS(q, want)                                                \
	do {                                                                 \
		char *s_ = status(q);                                        \
		if (!STREQ(s_, want))                                        \
			fprintf(stderr, "status: %s, want %s\n",             \
				s_ ? s_ : "(null)", want);                   \
		CHECK(STREQ(s_, want));                                      \
		free(s_);                                                    \
	} while (0)

int main(void)
{
	struct seen seen = { .lock = PTHREAD_MUTEX_INITIALIZER };
	const char *dir;
	char a[100], b[100], addr_a[110], addr_b[110];
	const char *paths[3] = { a, b, NULL };
	struct qmp *qa = NULL, *qb = NULL, *qc = NULL;
	int major, minor, micro, r;
	int want_major, want_minor, want_micro;
	char *json = NULL, *err = NULL;
	json_object *o;
	int64_t t0;
	pid_t pid;

	test_require_qemu();
	dir = test_init("qmp-qemu");
	snprintf(a, sizeof(a), "%s/a.qmp", dir);
	snprintf(b, sizeof(b), "%s/b.qmp", dir);
	snprintf(addr_a, sizeof(addr_a), "unix:%s", a);
	snprintf(addr_b, sizeof(addr_b), "unix:%s", b);
	pid = qemu_start(paths);
	REQUIRE(wait_listening(b, 5000));

	REQUIRE(qmp_new(addr_a, &qa) == 0);
	REQUIRE(qmp_new(addr_b, &qb) == 0);
	qmp_set_event_handler(qa, seen_on_event, &seen);

	/* The greeting's version is query-version's. */
	REQUIRE(qmp_connect(qa, 3000, NULL) == 0);
	CHECK(qmp_version(qa, &major, &minor, &micro) == 0);
	REQUIRE(qemu_binary_version(&want_major, &want_minor, &want_micro));
	CHECK(major == want_major && minor == want_minor &&
	      micro == want_micro);
	CHECK(qmp_execute(qa, "query-version", NULL, 3000, &json, NULL) == 0);
	o = json_tokener_parse(json);
	CHECK(get_int(o, "qemu", "major") == major);
	CHECK(get_int(o, "qemu", "minor") == minor);
	CHECK(get_int(o, "qemu", "micro") == micro);
	json_object_put(o);
	free(json);
	json = NULL;

	/* A second client on a busy monitor waits for a greeting in vain. */
	REQUIRE(qmp_new(addr_a, &qc) == 0);
	t0 = test_now_ms();
	CHECK(qmp_execute(qc, "query-status", NULL, 300, NULL, NULL) ==
	      -ETIMEDOUT);
	CHECK(test_now_ms() - t0 < 1500);
	qc = qmp_free(qc);

	CHECK_STATUS(qb, "running");
	CHECK(qmp_execute(qa, "stop", NULL, 3000, NULL, NULL) == 0);
	CHECK(seen_has(&seen, "STOP", 0)); /* it came before the reply */
	CHECK_STATUS(qb, "paused");
	CHECK(qmp_execute(qa, "cont", NULL, 3000, NULL, NULL) == 0);
	CHECK(seen_has(&seen, "RESUME", 0));
	CHECK_STATUS(qb, "running");

	/* QEMU's own errors come through with their class mapped. */
	CHECK(qmp_execute(qa, "no-such-command", NULL, 3000, NULL, &err) ==
	      -EOPNOTSUPP);
	CHECK(err && strstr(err, "no-such-command"));
	free(err);
	err = NULL;
	CHECK(qmp_execute(qa, "system_wakeup", NULL, 3000, NULL, &err) ==
	      -EIO);
	CHECK(err != NULL);
	free(err);
	err = NULL;
	CHECK(qmp_execute_json(qa, "{\"execute\": \"query-name\"}", 3000,
			       &json, NULL) == 0);
	CHECK(STREQ(json, "{\"return\": {}}"));
	free(json);
	json = NULL;

	/* A hung QEMU: a deadline, and it works again afterwards. */
	REQUIRE(kill(pid, SIGSTOP) == 0);
	t0 = test_now_ms();
	CHECK(qmp_execute(qa, "query-status", NULL, 500, NULL, NULL) ==
	      -ETIMEDOUT);
	t0 = test_now_ms() - t0;
	CHECK(t0 >= 490 && t0 < 2000);
	/* Known unresponsive now: the next caller fails at once. */
	t0 = test_now_ms();
	CHECK(qmp_execute(qa, "query-status", NULL, 500, NULL, NULL) ==
	      -ETIMEDOUT);
	CHECK(test_now_ms() - t0 < 100);
	REQUIRE(kill(pid, SIGCONT) == 0);
	/* The late reply is its sign of life: it answers again at once. */
	t0 = test_now_ms();
	while (qmp_execute(qa, "query-status", NULL, 500, NULL, NULL) ==
		       -ETIMEDOUT && test_now_ms() - t0 < 2000)
		test_sleep_ms(10);
	CHECK_STATUS(qa, "running");

	/* quit is answered, then EOF: it succeeds and QEMU exits. */
	CHECK(qmp_execute(qa, "quit", NULL, 3000, NULL, NULL) == 0);
	CHECK(seen_has(&seen, "SHUTDOWN", 0));
	CHECK(qemu_wait_exit(pid, 5000));
	for (int i = 0; i < 100 && qmp_is_connected(qa); i++)
		test_sleep_ms(10);
	CHECK(!qmp_is_connected(qa));
	CHECK(seen_lost(&seen) == 1);
	r = qmp_execute(qa, "query-status", NULL, 1000, NULL, &err);
	/* QEMU removes its socket file on a clean exit: ENOENT. */
	CHECK(r == -ENOENT);
	CHECK(access(a, F_OK) < 0 && errno == ENOENT);
	CHECK(err != NULL);
	free(err);
	err = NULL;
	/* qb was idle: it only learns on its next use. */
	CHECK(qmp_execute(qb, "query-status", NULL, 1000, NULL, NULL) < 0);

	/* The same struct qmp reconnects to a new QEMU on the same path. */
	pid = qemu_start(paths);
	CHECK_STATUS(qa, "running");
	CHECK(qmp_is_connected(qa));
	CHECK(qmp_version(qa, &major, &minor, &micro) == 0 &&
	      major == want_major && minor == want_minor);

	/* A QEMU killed outright: the loss is reported, the socket stays. */
	qemu_kill(pid);
	for (int i = 0; i < 200 && seen_lost(&seen) < 2; i++)
		test_sleep_ms(10);
	CHECK(seen_lost(&seen) == 2);
	CHECK(qmp_execute(qa, "query-status", NULL, 1000, NULL, NULL) ==
	      -ECONNREFUSED);

	qmp_free(qa);
	qmp_free(qb);
	return check_finish("test-qmp-qemu");
}
