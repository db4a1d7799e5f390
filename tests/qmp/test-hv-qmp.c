/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The QMP driver (lib/hv-qmp.c) through the public hv.h API, with real QEMU
 * processes appearing in and leaving a qmp-dir directory.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hv.h"
#include "qmp.h"
#include "testutil.h"

#define TIMEOUT_MS 1000
#define MAX_EVENTS 512

/* Every event as one line of text: "KIND domain detail". */
static struct {
	pthread_mutex_t lock;
	char *lines[MAX_EVENTS];
	int n;
} events = { .lock = PTHREAD_MUTEX_INITIALIZER };

static const char *const kinds[] = {
	[HV_EVENT_DEFINED] = "defined",
	[HV_EVENT_UNDEFINED] = "undefined",
	[HV_EVENT_STATE] = "state",
	[HV_EVENT_HYPERVISOR] = "qmp",
	[HV_EVENT_LOST] = "lost",
};

static void on_event(void *userdata, const struct hv_event *ev)
{
	char *line = NULL;
	const char *detail = ev->kind == HV_EVENT_STATE ?
			     hv_state_name(ev->state) :
			     ev->name ? ev->name : "-";

	if (asprintf(&line, "%s %s %s", kinds[ev->kind],
		     ev->domain ? ev->domain : "-", detail) < 0)
		return;
	pthread_mutex_lock(&events.lock);
	if (events.n < MAX_EVENTS)
		events.lines[events.n++] = line;
	else
		free(line);
	pthread_mutex_unlock(&events.lock);
}

/* Waits for an event line, after those seen by earlier calls to it. */
static int next_event;

static bool wait_event(const char *want, int ms)
{
	int64_t end = test_now_ms() + ms;

	do {
		pthread_mutex_lock(&events.lock);
		for (int i = next_event; i < events.n; i++) {
			if (strcmp(events.lines[i], want) == 0) {
				pthread_mutex_unlock(&events.lock);
				return true;
			}
		}
		pthread_mutex_unlock(&events.lock);
		test_sleep_ms(10);
	} while (test_now_ms() < end);
	fprintf(stderr, "no event \"%s\"; got:\n", want);
	pthread_mutex_lock(&events.lock);
	for (int i = next_event; i < events.n; i++)
		fprintf(stderr, "  %s\n", events.lines[i]);
	pthread_mutex_unlock(&events.lock);
	return false;
}

/* Forgets the events so far. */
static void events_mark(void)
{
	pthread_mutex_lock(&events.lock);
	next_event = events.n;
	pthread_mutex_unlock(&events.lock);
}

/* Whether a and then b are the last lines seen so far. */
static bool last_two(const char *a, const char *b)
{
	bool ok;

	pthread_mutex_lock(&events.lock);
	ok = events.n >= 2 && strcmp(events.lines[events.n - 2], a) == 0 &&
	     strcmp(events.lines[events.n - 1], b) == 0;
	if (!ok)
		for (int i = next_event; i < events.n; i++)
			fprintf(stderr, "  %s\n", events.lines[i]);
	pthread_mutex_unlock(&events.lock);
	return ok;
}

static int state_of(struct hv_conn *c, const char *name)
{
	enum hv_state s = HV_STATE_COUNT;
	int r = hv_state(c, name, &s, NULL);

	return r < 0 ? r : (int)s;
}

static size_t count_domains(struct hv_conn *c)
{
	struct hv_domain_info *v = NULL;
	size_t n = 0;

	CHECK(hv_list_domains(c, &v, &n, NULL) == 0);
	free(v);
	return n;
}

/* What QEMU's answers mean (hv-rich.c), on a running -machine none QEMU. */
static void test_meaning(struct hv_conn *c, const char *dom)
{
	struct hv_qmp_reply reply = { 0 };
	struct hv_vcpu_thread *v = NULL;
	char **names = NULL, *s = NULL, *err = NULL;
	const char *cmd;
	size_t n = 0, len = 0;
	uint64_t bytes = 0;
	bool status = false, schema = false, sorted = true;

	CHECK(hv_query_list(c, dom, &names, &n, NULL) == 0);
	for (size_t i = 0; i < n; i++) {
		status = status || STREQ(names[i], "status");
		schema = schema || STREQ(names[i], "qmp-schema");
		/* query-cpu-model-expansion needs arguments. */
		CHECK(!STREQ(names[i], "cpu-model-expansion"));
		sorted = sorted && (i == 0 || strcmp(names[i - 1], names[i]) < 0);
	}
	CHECK(status && schema && sorted);
	hv_names_free(names, n);
	/* Indented JSON and a newline, as query/status shows it. */
	CHECK(hv_query(c, dom, "status", &s, &len, NULL) == 0);
	CHECK(s && strstr(s, "\n  \"status\": \"running\"") &&
	      len == strlen(s) && s[len - 1] == '\n');
	free(s);
	s = NULL;
	/* A refusal is an answer about the VM: no balloon here. */
	CHECK(hv_query(c, dom, "balloon", &s, &len, &err) == -ENODATA);
	CHECK(!s && err && *err);
	free(err);
	err = NULL;
	CHECK(hv_vcpu_threads(c, dom, &v, &n, NULL) == 0);
	free(v);
	/* No balloon: base-memory of query-memory-size-summary (0 with
	 * -machine none and no -m). */
	bytes = 1;
	CHECK(hv_memory(c, dom, &bytes, NULL) == 0);
	CHECK(bytes == 0);
	names = NULL;
	CHECK(hv_block_devices(c, dom, &names, &n, NULL) == 0);
	hv_names_free(names, n);
	CHECK(hv_block_info(c, dom, "no-such-disk", &s, &len, &err) == -ENOENT);
	CHECK(!s && err && strstr(err, "no-such-disk"));
	free(err);
	err = NULL;

	/* The qmp file's exchange: one checked command, refusals beside. */
	CHECK(hv_qmp_exchange(c, dom, "[1]", 3, &reply, &err) == -EINVAL);
	CHECK(err && strstr(err, "execute"));
	free(err);
	err = NULL;
	cmd = "{\"execute\": 1}";
	CHECK(hv_qmp_exchange(c, dom, cmd, strlen(cmd), &reply, &err) ==
	      -EINVAL);
	free(err);
	err = NULL;
	cmd = " {\"execute\":\"query-name\"} \n";
	CHECK(hv_qmp_exchange(c, dom, cmd, strlen(cmd), &reply, NULL) == 0);
	CHECK(STREQ(reply.text, "{\"return\": {}}\n") &&
	      STREQ(reply.command, "query-name") && reply.refusal == 0 &&
	      !reply.desc);
	hv_qmp_reply_release(&reply);
	cmd = "{\"execute\":\"no-such-cmd\"}";
	CHECK(hv_qmp_exchange(c, dom, cmd, strlen(cmd), &reply, NULL) == 0);
	CHECK(reply.text && strstr(reply.text, "CommandNotFound") &&
	      reply.refusal == -EOPNOTSUPP && reply.desc && *reply.desc);
	hv_qmp_reply_release(&reply);
}

static void test_uris(const char *dir)
{
	struct hv_conn *c = NULL;
	struct hv_domain_info *v = NULL;
	char uri[200], *err = NULL;
	size_t n = 0;

	CHECK(hv_open("qmp:=unix:/x", NULL, &c, &err) == -EINVAL);
	CHECK(err != NULL);
	free(err);
	err = NULL;
	CHECK(hv_open("qmp:a/b=unix:/x", NULL, &c, NULL) == -EINVAL);
	CHECK(hv_open("qmp:vm", NULL, &c, NULL) == -EINVAL);
	CHECK(hv_open("qmp:vm=file:/x", NULL, &c, NULL) == -EINVAL);
	CHECK(hv_open("qmp-dir:/nonexistent/dir", NULL, &c, NULL) == -ENOENT);
	CHECK(hv_open("qmp-dir:", NULL, &c, NULL) == -EINVAL);
	CHECK(c == NULL);

	/* One domain; nobody listens there: shutoff, not an error. */
	snprintf(uri, sizeof(uri), "qmp:solo=unix:%s/none.sock", dir);
	REQUIRE(hv_open(uri, NULL, &c, NULL) == 0);
	CHECK(STREQ(hv_driver_name(c), "qmp"));
	CHECK(hv_list_domains(c, &v, &n, NULL) == 0);
	CHECK(n == 1 && STREQ(v[0].name, "solo") && v[0].id == -1 &&
	      v[0].state == HV_STATE_NOSTATE && v[0].uuid[0] == '\0');
	free(v);
	CHECK(state_of(c, "solo") == HV_STATE_SHUTOFF);
	CHECK(state_of(c, "other") == -ENOENT);
	hv_close(c);
}

int main(void)
{
	const char *dir;
	char p1[100], p2[100], p2b[100], uri[120], *s = NULL, *err = NULL;
	const char *paths1[2] = { p1, NULL };
	const char *paths2[3] = { p2, p2b, NULL };
	struct hv_options opts = { .timeout_ms = TIMEOUT_MS };
	struct hv_domain_info info;
	struct hv_conn *c = NULL;
	struct qmp *check = NULL;
	pid_t vm1, vm2;
	int64_t t0;
	unsigned verbs;
	int major, minor, micro;
	char want[48];

	test_require_qemu();
	dir = test_init("hv-qmp");
	test_uris(dir);

	snprintf(p1, sizeof(p1), "%s/vm1.qmp", dir);
	snprintf(p2, sizeof(p2), "%s/vm2.qmp", dir);
	snprintf(p2b, sizeof(p2b), "%s/vm2.sock", dir); /* not a domain */
	vm1 = qemu_start(paths1);

	snprintf(uri, sizeof(uri), "qmp-dir:%s", dir);
	REQUIRE(hv_open(uri, &opts, &c, NULL) == 0);
	CHECK(count_domains(c) == 1);
	CHECK(hv_lookup(c, "vm1", &info, NULL) == 0);
	CHECK(STREQ(info.name, "vm1") && info.id == -1);
	CHECK(info.state == HV_STATE_RUNNING); /* the first lookup asks */
	CHECK(STREQ(info.uuid, "00000000-0000-0000-0000-000000000000"));
	CHECK(hv_lookup(c, "vm9", &info, NULL) == -ENOENT);
	CHECK(state_of(c, "vm1") == HV_STATE_RUNNING);

	CHECK(hv_subscribe(c, on_event, NULL) == 0);
	CHECK(hv_subscribe(c, on_event, NULL) < 0);

	/* A VM started later appears. */
	vm2 = qemu_start(paths2);
	CHECK(wait_event("defined vm2 -", 3000));
	CHECK(count_domains(c) == 2);
	CHECK(hv_version(c, "vm2", &s, NULL) == 0);
	REQUIRE(qemu_binary_version(&major, &minor, &micro));
	snprintf(want, sizeof(want), "%d.%d.%d", major, minor, micro);
	CHECK(STREQ(s, want));
	free(s);
	s = NULL;
	snprintf(uri, sizeof(uri), "unix:%s", p2b);
	REQUIRE(qmp_new(uri, &check) == 0);

	/* Verbs. */
	verbs = hv_verbs(c, "vm2");
	CHECK(!(verbs & HV_VERB_BIT(HV_VERB_START)));
	CHECK(!(verbs & HV_VERB_BIT(HV_VERB_REBOOT)));
	CHECK(verbs & HV_VERB_BIT(HV_VERB_PAUSE));
	CHECK(hv_control(c, "vm2", HV_VERB_START, NULL) == -EOPNOTSUPP);
	CHECK(hv_control(c, "vm2", HV_VERB_REBOOT, NULL) == -EOPNOTSUPP);
	CHECK(hv_control(c, "vm9", HV_VERB_PAUSE, NULL) == -ENOENT);

	events_mark();
	CHECK(hv_control(c, "vm2", HV_VERB_PAUSE, NULL) == 0);
	CHECK(wait_event("qmp vm2 STOP", 2000));
	CHECK(wait_event("state vm2 paused", 2000));
	CHECK(state_of(c, "vm2") == HV_STATE_PAUSED);
	CHECK(qmp_execute(check, "query-status", NULL, 2000, &s, NULL) == 0);
	CHECK(s && strstr(s, "\"paused\""));
	free(s);
	s = NULL;
	CHECK(hv_control(c, "vm2", HV_VERB_RESUME, NULL) == 0);
	CHECK(wait_event("state vm2 running", 2000));
	CHECK(state_of(c, "vm2") == HV_STATE_RUNNING);
	CHECK(hv_control(c, "vm2", HV_VERB_RESET, NULL) == 0);
	CHECK(wait_event("qmp vm2 RESET", 2000));
	CHECK(hv_control(c, "vm2", HV_VERB_POWERDOWN, NULL) == 0);
	CHECK(wait_event("qmp vm2 POWERDOWN", 2000));
	CHECK(hv_control(c, "vm2", HV_VERB_WAKEUP, &err) == -EIO);
	/* QEMU's own text ("...not supported by this guest" here). */
	CHECK(err && strstr(err, "suspend"));
	free(err);
	err = NULL;
	CHECK(hv_qmp(c, "vm2", "{\"execute\": \"query-name\"}", &s, NULL) ==
	      0);
	CHECK(STREQ(s, "{\"return\": {}}"));
	free(s);
	s = NULL;
	test_meaning(c, "vm2");

	/* A hung QEMU: -ETIMEDOUT within about the timeout, then fine. */
	REQUIRE(kill(vm1, SIGSTOP) == 0);
	t0 = test_now_ms();
	CHECK(state_of(c, "vm1") == -ETIMEDOUT);
	t0 = test_now_ms() - t0;
	CHECK(t0 >= TIMEOUT_MS - 10 && t0 < 3 * TIMEOUT_MS);
	CHECK(count_domains(c) == 2); /* list needs no monitor */
	t0 = test_now_ms(); /* known unresponsive: at once now */
	CHECK(state_of(c, "vm1") == -ETIMEDOUT);
	CHECK(test_now_ms() - t0 < TIMEOUT_MS / 2);
	REQUIRE(kill(vm1, SIGCONT) == 0);
	t0 = test_now_ms(); /* until its late reply comes: a sign of life */
	while (state_of(c, "vm1") == -ETIMEDOUT && test_now_ms() - t0 < 2000)
		test_sleep_ms(10);
	CHECK(state_of(c, "vm1") == HV_STATE_RUNNING);

	/* destroy: QEMU exits and removes its socket: the domain leaves. */
	events_mark();
	CHECK(hv_control(c, "vm2", HV_VERB_DESTROY, NULL) == 0);
	CHECK(qemu_wait_exit(vm2, 5000));
	CHECK(wait_event("qmp vm2 SHUTDOWN", 2000));
	/* Its last two events: its final state, then its leaving. */
	CHECK(wait_event("undefined vm2 -", 3000));
	CHECK(last_two("state vm2 shutoff", "undefined vm2 -"));
	CHECK(count_domains(c) == 1);
	CHECK(state_of(c, "vm2") == -ENOENT);
	check = qmp_free(check);

	/* Killed outright: the socket stays, the domain reads shutoff. */
	events_mark();
	qemu_kill(vm1);
	CHECK(wait_event("state vm1 shutoff", 3000));
	CHECK(count_domains(c) == 1);
	CHECK(state_of(c, "vm1") == HV_STATE_SHUTOFF);
	CHECK(hv_version(c, "vm1", &s, NULL) == -ENODATA);
	CHECK(hv_control(c, "vm1", HV_VERB_PAUSE, NULL) == -ECONNREFUSED);

	/* The same name again: the watcher connects, the state follows. */
	events_mark();
	vm1 = qemu_start(paths1);
	CHECK(wait_event("state vm1 running", 5000));
	CHECK(state_of(c, "vm1") == HV_STATE_RUNNING);
	CHECK(hv_lookup(c, "vm1", &info, NULL) == 0);
	CHECK(info.state == HV_STATE_RUNNING);

	hv_close(c);
	qemu_kill(vm1);
	for (int i = 0; i < events.n; i++)
		free(events.lines[i]);
	return check_finish("test-hv-qmp");
}
