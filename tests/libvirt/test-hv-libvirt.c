/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The libvirt driver (lib/hv-libvirt.c) through hv.h, self-contained: against
 * the small mock libvirtd of tests/mock (mock-vrpc.h) in a temporary
 * directory, no libvirtd, no QEMU. Listing, lookup, state, XML, the monitor
 * passthrough, the control verbs and their lifecycle events, libvirt's error
 * codes as errnos with libvirtd's message, a hung domain failing fast while
 * the others answer, and a lost connection. test-libvirt-live does the same
 * against a real libvirtd.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hv.h"
#include "mock-util.h"
#include "mock-vrpc.h"
#include "../check.h"

#define TIMEOUT_MS 500

static const char script[] =
	"domain run running\n"
	"domain pau paused\n"
	"domain off shutoff\n"
	"xml off <domain type='kvm'><name>off</name><memory>1</memory>"
	"</domain>\n";

/* What the event handler saw. */
static struct {
	pthread_mutex_t lock;
	char log[4096]; /* "KIND:DOMAIN:STATE " for each event */
	int lost;
} seen = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void on_event(void *userdata, const struct hv_event *ev)
{
	size_t n;

	pthread_mutex_lock(&seen.lock);
	n = strlen(seen.log);
	if (ev->kind == HV_EVENT_LOST)
		seen.lost++;
	else if (n + 80 < sizeof(seen.log))
		snprintf(seen.log + n, sizeof(seen.log) - n, "%d:%s:%s ",
			 ev->kind, ev->domain ? ev->domain : "-",
			 ev->kind == HV_EVENT_STATE ?
			 hv_state_name(ev->state) : "-");
	pthread_mutex_unlock(&seen.lock);
}

/* Waits up to 3 s for the event log to contain want. */
static bool saw(const char *want)
{
	for (int i = 0; i < 300; i++) {
		bool ok;

		pthread_mutex_lock(&seen.lock);
		ok = strstr(seen.log, want) != NULL;
		pthread_mutex_unlock(&seen.lock);
		if (ok)
			return true;
		mock_sleep_ms(10);
	}
	fprintf(stderr, "events: %s\n", seen.log);
	return false;
}

static int lost(void)
{
	int n;

	pthread_mutex_lock(&seen.lock);
	n = seen.lost;
	pthread_mutex_unlock(&seen.lock);
	return n;
}

static bool has_error(char **err, const char *words)
{
	bool ok = *err && strstr(*err, words);

	if (!ok)
		fprintf(stderr, "error: %s\n", *err ? *err : "(none)");
	free(*err);
	*err = NULL;
	return ok;
}

static void test_open(void)
{
	struct hv_conn *c = NULL;
	char *err = NULL;

	CHECK(hv_open("qemu+unix:///system?socket=/nonexistent/sock", NULL,
		      &c, &err) == -ECONNREFUSED);
	CHECK(c == NULL && has_error(&err, "cannot connect to libvirtd"));
}

static void test_reads(struct mock_libvirtd *d, struct hv_conn *c)
{
	struct hv_domain_info *list = NULL, info;
	enum hv_state st;
	char *err = NULL, *s = NULL;
	size_t n = 0;

	CHECK(!strcmp(hv_driver_name(c), "libvirt"));
	CHECK(hv_list_domains(c, &list, &n, &err) == 0);
	REQUIRE(n == 3);
	CHECK(!strcmp(list[0].name, "run") && list[0].state == HV_STATE_RUNNING
	      && list[0].id == 1);
	CHECK(!strcmp(list[0].uuid, "01020304-0506-0708-090a-0b0c0d0e0f10"));
	CHECK(!strcmp(list[1].name, "pau") && list[1].state == HV_STATE_PAUSED
	      && list[1].id == 2);
	CHECK(!strcmp(list[2].name, "off") && list[2].state == HV_STATE_SHUTOFF
	      && list[2].id == -1);
	free(list);
	/* Three calls, whatever the number of domains. */
	CHECK(mock_libvirtd_calls(d, "list-all-domains") == 3);
	CHECK(mock_libvirtd_calls(d, "get-state") == 0);

	CHECK(hv_lookup(c, "pau", &info, &err) == 0);
	CHECK(!strcmp(info.name, "pau") && info.state == HV_STATE_PAUSED &&
	      info.id == 2 && info.uuid[1] == '2');
	CHECK(hv_lookup(c, "nope", &info, &err) == -ENOENT);
	CHECK(has_error(&err, "Domain not found"));
	CHECK(hv_state(c, "off", &st, &err) == 0 && st == HV_STATE_SHUTOFF);
	CHECK(hv_state(c, "nope", &st, &err) == -ENOENT);
	free(err);
	err = NULL;

	CHECK(hv_xml(c, "off", &s, &err) == 0);
	CHECK(s && !strcmp(s, "<domain type='kvm'><name>off</name><memory>1"
			   "</memory></domain>"));
	free(s);
	s = NULL;
	CHECK(hv_version(c, "run", &s, &err) == 0);
	CHECK(s && !strcmp(s, "7.2.0"));
	free(s);
	s = NULL;
	/* Not running: libvirtd says "operation invalid". */
	CHECK(hv_version(c, "off", &s, &err) == -ENODATA);
	CHECK(s == NULL && has_error(&err, "not running"));
	/* Bulk statistics: every domain's state. */
	{
		struct hv_stats *v = NULL;
		const struct hv_stat *k;

		CHECK(hv_stats_all(c, &v, &n, &err) == 0);
		CHECK(n == 3 && v && !strcmp(v[1].name, "pau"));
		k = v && n == 3 ? hv_stats_find(&v[1], "state.state") : NULL;
		CHECK(k && k->v.i == HV_STATE_PAUSED);
		hv_stats_free(v, n);
	}
	/* The name -> uuid cache: one lookup per name. */
	CHECK(mock_libvirtd_calls(d, "lookup-by-name") <= 4);
}

static void test_control(struct mock_libvirtd *d, struct hv_conn *c)
{
	char *err = NULL;

	CHECK(hv_subscribe(c, on_event, NULL) == 0);
	/* Two callbacks: lifecycle and agent lifecycle. */
	CHECK(mock_libvirtd_calls(d, "connect-domain-event-callback-"
				  "register-any") == 2);
	CHECK(hv_control(c, "run", HV_VERB_PAUSE, &err) == 0);
	CHECK(mock_libvirtd_state(d, "run") == 3);
	CHECK(saw("2:run:paused "));
	CHECK(hv_control(c, "run", HV_VERB_RESUME, &err) == 0);
	CHECK(saw("2:run:running "));
	CHECK(hv_control(c, "run", HV_VERB_RESUME, &err) == -EBUSY);
	CHECK(has_error(&err, "Requested operation is not valid"));
	CHECK(hv_control(c, "off", HV_VERB_START, &err) == 0);
	CHECK(saw("2:off:running "));
	CHECK(hv_control(c, "off", HV_VERB_DESTROY, &err) == 0);
	CHECK(saw("2:off:shutoff "));
	CHECK(mock_libvirtd_state(d, "off") == 5);
	CHECK(hv_control(c, "off", HV_VERB_REBOOT, &err) == -EBUSY);
	free(err);
	err = NULL;
	/* An event libvirtd sends on its own. */
	mock_libvirtd_event(d, "pau", 4, 0); /* RESUMED */
	CHECK(saw("2:pau:running "));
	mock_libvirtd_event(d, "pau", 1, 0); /* UNDEFINED */
	CHECK(saw("1:pau:- "));
}

/* Errors with the codes libvirt uses: the errno that fits and libvirtd's
 * own message. */
static void test_errors(struct mock_libvirtd *d, struct hv_conn *c)
{
	static const struct {
		int code;
		int want;
	} codes[] = {
		{ 1, -EIO }, { 3, -EOPNOTSUPP }, { 8, -EINVAL },
		{ 38, -EIO }, { 42, -ENOENT }, { 55, -EBUSY },
		{ 68, -ETIMEDOUT }, { 84, -EOPNOTSUPP }, { 88, -EACCES },
	};
	enum hv_state st;
	char *err = NULL, line[128], words[64];

	mock_libvirtd_line(d, "domain err running");
	for (size_t i = 0; i < sizeof(codes) / sizeof(*codes); i++) {
		snprintf(line, sizeof(line), "fault get-state@err error %d "
			 "mock error %d", codes[i].code, codes[i].code);
		mock_libvirtd_line(d, line);
		snprintf(words, sizeof(words), "mock error %d", codes[i].code);
		CHECK(hv_state(c, "err", &st, &err) == codes[i].want);
		CHECK(has_error(&err, words));
	}
	/* The other domains do not notice. */
	CHECK(hv_state(c, "run", &st, &err) == 0 && st == HV_STATE_RUNNING);
}

/*
 * A domain whose QEMU hangs: its monitor calls time out once, then fail at
 * once without a call until the late reply comes; libvirtd's own records
 * (state) and the other domains answer all along.
 */
static void test_hung(struct mock_libvirtd *d, struct hv_conn *c)
{
	enum hv_state st;
	char *err = NULL, *s = NULL;
	int64_t t0, dt;
	int calls;

	mock_libvirtd_line(d, "domain hung running");
	mock_libvirtd_line(d, "fault qemu-monitor-command@hung late 2000");
	t0 = mock_now_ms();
	CHECK(hv_version(c, "hung", &s, &err) == -ETIMEDOUT);
	dt = mock_now_ms() - t0;
	CHECK(dt >= TIMEOUT_MS - 10 && dt < TIMEOUT_MS + 1500);
	free(err);
	err = NULL;
	calls = mock_libvirtd_calls(d, "qemu-monitor-command");
	for (int i = 0; i < 5; i++) {
		t0 = mock_now_ms();
		CHECK(hv_version(c, "hung", &s, &err) == -ETIMEDOUT);
		CHECK(mock_now_ms() - t0 < 100);
		free(err);
		err = NULL;
	}
	CHECK(mock_libvirtd_calls(d, "qemu-monitor-command") == calls);
	CHECK(hv_state(c, "hung", &st, &err) == 0 && st == HV_STATE_RUNNING);
	CHECK(hv_version(c, "run", &s, &err) == 0);
	free(s);
	s = NULL;
	/* QEMU answers again: the late reply ends the fail-fast. */
	mock_libvirtd_line(d, "fault qemu-monitor-command@hung late 0");
	t0 = mock_now_ms();
	while (hv_version(c, "hung", &s, &err) != 0 &&
	       mock_now_ms() - t0 < 5000) {
		free(err);
		err = NULL;
		mock_sleep_ms(50);
	}
	CHECK(s && !strcmp(s, "7.2.0"));
	CHECK(mock_now_ms() - t0 < 4000);
	free(s);
	free(err);
}

/* libvirtd drops every connection: a lost event; the next call connects
 * again, and events come again (the subscription is made again). */
static void test_lost(struct mock_libvirtd *d, struct hv_conn *c)
{
	enum hv_state st;
	char *err = NULL;
	int accepted = mock_libvirtd_accepted(d);

	mock_libvirtd_drop(d);
	for (int i = 0; i < 300 && lost() == 0; i++)
		mock_sleep_ms(10);
	CHECK(lost() == 1);
	st = HV_STATE_NOSTATE;
	for (int i = 0; i < 50 && hv_state(c, "run", &st, &err) != 0; i++) {
		free(err);
		err = NULL;
		mock_sleep_ms(100);
	}
	CHECK(st == HV_STATE_RUNNING);
	CHECK(mock_libvirtd_accepted(d) == accepted + 1);
	mock_libvirtd_event(d, "run", 3, 0);
	CHECK(saw("2:run:paused "));
	/* A reply whose length word lies costs the connection, not the
	 * mount: -EPROTO, and the next call reconnects. */
	mock_libvirtd_line(d, "fault get-state@run len 0x7fffffff");
	CHECK(hv_state(c, "run", &st, &err) == -EPROTO);
	CHECK(has_error(&err, "protocol"));
	mock_libvirtd_line(d, "fault get-state@run raw \\x00\\x00\\x00\\x01");
	CHECK(hv_state(c, "run", &st, &err) == -EPROTO);
	free(err);
}

static int by_uuid(const void *a, const void *b)
{
	return strcmp(((const struct hv_domain_info *)a)->uuid,
		      ((const struct hv_domain_info *)b)->uuid);
}

/* More domains than a byte counts: one listing, each its own uuid. */
static void test_many(const struct hv_options *opts)
{
	static const char *const states[] = { "running", "paused", "shutoff" };
	enum { N = 1000 };
	struct mock_libvirtd *d;
	struct hv_domain_info *list = NULL;
	struct hv_stats *v = NULL;
	struct hv_conn *c = NULL;
	char *many = mock_xalloc(N * 32), *err = NULL;
	size_t n = 0, len = 0;
	enum hv_state st;

	for (int i = 0; i < N; i++)
		len += (size_t)sprintf(many + len, "domain m%04d %s\n", i,
				       states[i % 3]);
	d = mock_libvirtd_start(NULL, false, many, NULL);
	REQUIRE(hv_open(mock_libvirtd_uri(d), opts, &c, &err) == 0);
	CHECK(hv_list_domains(c, &list, &n, &err) == 0);
	REQUIRE(n == N);
	CHECK(!strcmp(list[N - 1].name, "m0999") &&
	      list[N - 1].state == HV_STATE_RUNNING);
	CHECK(!strcmp(list[299].uuid, "2c030304-0506-0708-090a-0b0c0d0e0f10"));
	qsort(list, n, sizeof(*list), by_uuid);
	for (size_t i = 1; i < n; i++)
		CHECK(strcmp(list[i - 1].uuid, list[i].uuid));
	free(list);
	CHECK(hv_state(c, "m0700", &st, &err) == 0 && st == HV_STATE_PAUSED);
	CHECK(hv_state(c, "m0701", &st, &err) == 0 && st == HV_STATE_SHUTOFF);
	CHECK(hv_stats_all(c, &v, &n, &err) == 0 && n == N);
	hv_stats_free(v, n);
	hv_close(c);
	CHECK(mock_libvirtd_finish(d));
	free(many);
	free(err);
}

int main(void)
{
	struct hv_options opts = { .timeout_ms = TIMEOUT_MS };
	struct mock_libvirtd *d = mock_libvirtd_start(NULL, false, script, NULL);
	struct hv_conn *c = NULL;
	char *err = NULL;

	alarm(120);
	test_open();
	REQUIRE(hv_open(mock_libvirtd_uri(d), &opts, &c, &err) == 0);
	test_reads(d, c);
	test_control(d, c);
	test_errors(d, c);
	test_hung(d, c);
	test_lost(d, c);
	hv_close(c);
	CHECK(mock_libvirtd_finish(d));

	/* The same over TCP. */
	d = mock_libvirtd_start(NULL, true, script, NULL);
	CHECK(hv_open(mock_libvirtd_uri(d), &opts, &c, &err) == 0);
	CHECK(strstr(mock_libvirtd_uri(d), "qemu+tcp://127.0.0.1:"));
	test_reads(d, c);
	hv_close(c);
	CHECK(mock_libvirtd_finish(d));
	test_many(&opts);
	free(err);
	return check_finish("test-hv-libvirt");
}
