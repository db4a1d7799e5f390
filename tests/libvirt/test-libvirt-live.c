/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The libvirt driver against the real libvirtd, through hv.h, with virsh as
 * the oracle: the tests' private libvirtd, whose directory is
 * $HVFS_TEST_LIBVIRTD (meson runs this under `tests/libvirtd.sh run`). Root.
 * Creates domains named hvt-lv-<pid>[-...] and removes them on every exit.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "hv.h"
#include "lvutil.h"
#include "../check.h"

/* The private libvirtd's socket and URIs; the shell commands below read the
 * URIs from the environment ($HVT_URI, $HVT_TEST_URI). */
static char sock[256], uri[320], test_uri[320];

static char dom[64];
static char xml_path[128];

static void cleanup(void)
{
	if (!dom[0])
		return;
	sh(NULL, "virsh -q -c \"$HVT_URI\" destroy %s >/dev/null 2>&1", dom);
	sh(NULL, "virsh -q -c \"$HVT_URI\" undefine %s >/dev/null 2>&1", dom);
	if (xml_path[0])
		unlink(xml_path);
}

static void on_signal(int sig)
{
	/* cleanup() is not async-signal-safe, but this process is about to
	 * die anyway and leaving a domain behind is worse. */
	cleanup();
	_exit(128 + sig);
}

/* ---- events ---- */

#define MAX_EVENTS 512

static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct {
		enum hv_event_kind kind;
		enum hv_state state;
		char domain[128];
		char name[64];
	} ev[MAX_EVENTS];
	int n;
} events = { .lock = PTHREAD_MUTEX_INITIALIZER,
	     .cond = PTHREAD_COND_INITIALIZER };

static void on_event(void *ud, const struct hv_event *ev)
{
	pthread_mutex_lock(&events.lock);
	if (events.n < MAX_EVENTS) {
		events.ev[events.n].kind = ev->kind;
		events.ev[events.n].state = ev->state;
		snprintf(events.ev[events.n].domain, 128, "%s",
			 ev->domain ? ev->domain : "");
		snprintf(events.ev[events.n].name, 64, "%s",
			 ev->name ? ev->name : "");
		events.n++;
	}
	pthread_cond_broadcast(&events.cond);
	pthread_mutex_unlock(&events.lock);
}

/* Waits up to 10 s for an event about our domain; state ignored unless
 * kind is HV_EVENT_STATE. Consumes events up to and including it. */
static int seen_from;

static bool wait_event(enum hv_event_kind kind, enum hv_state state)
{
	struct timespec d;
	bool found = false;

	clock_gettime(CLOCK_REALTIME, &d);
	d.tv_sec += 10;
	pthread_mutex_lock(&events.lock);
	while (!found) {
		for (int i = seen_from; i < events.n; i++) {
			if (events.ev[i].kind == kind &&
			    !strcmp(events.ev[i].domain, dom) &&
			    (kind != HV_EVENT_STATE ||
			     events.ev[i].state == state)) {
				seen_from = i + 1;
				found = true;
				break;
			}
		}
		if (!found &&
		    pthread_cond_timedwait(&events.cond, &events.lock, &d))
			break;
	}
	pthread_mutex_unlock(&events.lock);
	if (!found)
		fprintf(stderr, "no event kind %d state %d for %s\n", kind,
			state, dom);
	return found;
}

static bool saw_monitor_event(const char *name)
{
	bool found = false;

	pthread_mutex_lock(&events.lock);
	for (int i = 0; i < events.n; i++)
		if (events.ev[i].kind == HV_EVENT_HYPERVISOR &&
		    !strcmp(events.ev[i].domain, dom) &&
		    !strcmp(events.ev[i].name, name))
			found = true;
	pthread_mutex_unlock(&events.lock);
	return found;
}

/* ---- oracle comparisons ---- */

static const char *virsh_state_word(enum hv_state s)
{
	/* virsh domstate's words */
	switch (s) {
	case HV_STATE_RUNNING: return "running";
	case HV_STATE_PAUSED: return "paused";
	case HV_STATE_SHUTOFF: return "shut off";
	case HV_STATE_SHUTDOWN: return "in shutdown";
	case HV_STATE_CRASHED: return "crashed";
	case HV_STATE_PMSUSPENDED: return "pmsuspended";
	case HV_STATE_BLOCKED: return "idle";
	default: return "no state";
	}
}

static bool has_line(const char *text, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (!strncmp(p, line, n) && (p[n] == '\n' || p[n] == '\0'))
			return true;
	return false;
}

static void compare_list(struct hv_conn *c, const char *vuri, bool stable)
{
	struct hv_domain_info *l = NULL;
	char *before = NULL, *after = NULL, *err = NULL;
	size_t n = 0;
	int r;

	sh(&before, "virsh -q -c '%s' list --all --name", vuri);
	r = hv_list_domains(c, &l, &n, &err);
	sh(&after, "virsh -q -c '%s' list --all --name", vuri);
	CHECK(r == 0);
	if (r < 0)
		fprintf(stderr, "list: %s\n", err);
	for (size_t i = 0; i < n; i++) {
		char *uuid = NULL, *state = NULL;
		bool in_before, in_after;

		in_before = has_line(before, l[i].name);
		in_after = has_line(after, l[i].name);
		CHECK(in_before || in_after);
		if (sh(&uuid, "virsh -q -c '%s' domuuid '%s' 2>/dev/null", vuri,
		       l[i].name) == 0)
			CHECK(!strcmp(uuid, l[i].uuid));
		/* Other tests change their domains' states: compare states only
		 * where nothing else runs (the test driver) or for ours. */
		if ((stable || !strcmp(l[i].name, dom)) &&
		    sh(&state, "virsh -q -c '%s' domstate '%s'", vuri,
		       l[i].name) == 0) {
			if (strcmp(state, virsh_state_word(l[i].state)))
				fprintf(stderr, "%s: state %s, virsh %s\n",
					l[i].name,
					virsh_state_word(l[i].state), state);
			CHECK(!strcmp(state, virsh_state_word(l[i].state)));
		}
		CHECK((l[i].id >= 0) == (l[i].state != HV_STATE_SHUTOFF));
		free(uuid);
		free(state);
	}
	/* Every domain virsh saw both times is in our list. */
	for (char *s = before, *e; s && *s; s = e ? e + 1 : NULL) {
		bool found = false;

		e = strchr(s, '\n');
		if (e)
			*e = '\0';
		if (!*s || !has_line(after, s))
			continue;
		for (size_t i = 0; i < n; i++)
			found |= !strcmp(l[i].name, s);
		if (!found)
			fprintf(stderr, "%s: missing from our list\n", s);
		CHECK(found);
	}
	free(before);
	free(after);
	free(l);
	free(err);
}

static void expect_virsh_state(const char *want)
{
	char *s = NULL;

	sh(&s, "virsh -q -c \"$HVT_URI\" domstate %s", dom);
	if (strcmp(s, want))
		fprintf(stderr, "virsh domstate %s: %s, want %s\n", dom, s,
			want);
	CHECK(!strcmp(s, want));
	free(s);
}

/* ---- the tests ---- */

static void test_test_driver(void)
{
	struct hv_conn *c = NULL;
	struct hv_domain_info info;
	enum hv_state st;
	char *err = NULL, *s = NULL;
	int r;

	r = hv_open(test_uri, NULL, &c, &err);
	REQUIRE(r == 0);
	CHECK(!strcmp(hv_driver_name(c), "libvirt"));
	compare_list(c, test_uri, true);

	CHECK(hv_lookup(c, "test", &info, &err) == 0);
	CHECK(info.id == 1 && info.state == HV_STATE_RUNNING);
	sh(&s, "virsh -q -c \"$HVT_TEST_URI\" domuuid test");
	CHECK(!strcmp(s, info.uuid));
	free(s);
	CHECK(hv_state(c, "test", &st, &err) == 0 && st == HV_STATE_RUNNING);

	/* The test driver's state belongs to our connection. */
	CHECK(hv_control(c, "test", HV_VERB_PAUSE, &err) == 0);
	CHECK(hv_state(c, "test", &st, &err) == 0 && st == HV_STATE_PAUSED);
	CHECK(hv_control(c, "test", HV_VERB_RESUME, &err) == 0);
	CHECK(hv_state(c, "test", &st, &err) == 0 && st == HV_STATE_RUNNING);

	free(err);
	err = NULL;
	CHECK(hv_state(c, "hvt-lv-no-such-domain", &st, &err) == -ENOENT);
	CHECK(err && strstr(err, "not found"));
	free(err);
	err = NULL;
	hv_close(c);

	/* URI forms. */
	c = NULL;
	CHECK(hv_open(uri, NULL, &c, &err) == 0);
	hv_close(c);
	c = NULL;
	CHECK(hv_open("qemu+tls://localhost/system", NULL, &c, &err) ==
	      -EOPNOTSUPP);
	CHECK(err && strstr(err, "tls"));
	free(err);
	err = NULL;
	/* ssh is tested against a private sshd (tests/fs/test_user_ssh.py);
	 * here only a host that would be an ssh option, refused unrun. */
	CHECK(hv_open("qemu+ssh://-oProxyCommand=x/system", NULL, &c, &err) ==
	      -EINVAL);
	free(err);
	err = NULL;
	CHECK(hv_open("qemu+unix:///system?socket=/nonexistent/sock", NULL, &c,
		      &err) < 0);
	CHECK(err != NULL);
	free(err);
}

static int query_version_virsh(char **ret)
{
	char *out = NULL;
	json_object *o, *q;
	int r;

	r = sh(&out, "virsh -c \"$HVT_URI\" qemu-monitor-command %s "
		     "'{\"execute\":\"query-version\"}'", dom);
	if (r != 0)
		return -EIO;
	o = json_tokener_parse(out);
	free(out);
	if (!o || !json_object_object_get_ex(o, "return", &q) ||
	    !json_object_object_get_ex(q, "qemu", &q))
		return -EIO;
	asprintf(ret, "%d.%d.%d",
		 json_object_get_int(json_object_object_get(q, "major")),
		 json_object_get_int(json_object_object_get(q, "minor")),
		 json_object_get_int(json_object_object_get(q, "micro")));
	json_object_put(o);
	return 0;
}

static void define_domain(void)
{
	FILE *f = fopen(xml_path, "w");

	REQUIRE(f);
	/* KVM where the host has it, else TCG. */
	fprintf(f, "<domain type='%s'><name>%s</name>"
		   "<memory unit='MiB'>32</memory><vcpu>1</vcpu>"
		   "<os><type arch='x86_64' machine='pc'>hvm</type></os>"
		   "<devices><emulator>/usr/bin/qemu-system-x86_64</emulator>"
		   "<serial type='pty'/><console type='pty'/>"
		   "</devices></domain>\n",
		access("/dev/kvm", R_OK | W_OK) ? "qemu" : "kvm", dom);
	fclose(f);
	REQUIRE(sh(NULL, "virsh -q -c \"$HVT_URI\" define %s >/dev/null",
		   xml_path) == 0);
}

static void on_console(void *ud, const char *data, size_t len, int err,
		       const char *msg)
{
	(void)ud, (void)data, (void)len, (void)err, (void)msg;
}

/* The console of the running domain: held by one client at a time, never
 * forced; the abort at close frees it for the next. */
static void check_console(struct hv_conn *c)
{
	struct hv_conn *c2 = NULL;
	struct hv_console *con = NULL, *con2 = NULL;
	char *err = NULL;
	int r = -1;

	REQUIRE(hv_open(uri, NULL, &c2, &err) == 0);
	CHECK(hv_console_open(c, dom, on_console, NULL, &con, &err) == 0);
	CHECK(hv_console_open(c2, dom, on_console, NULL, &con2, &err) ==
	      -EBUSY);
	CHECK(err && strstr(err, "Active console session"));
	CHECK(sh(NULL, "virsh -q -c \"$HVT_URI\" console %s </dev/null "
		    ">/dev/null 2>&1", dom) != 0);
	CHECK(hv_console_write(con, "\n", 1, &err) == 0);
	hv_console_close(con);
	for (int i = 0; i < 50 && r != 0; i++) {
		r = hv_console_open(c2, dom, on_console, NULL, &con2, &err);
		if (r == -EBUSY)
			usleep(100000);
	}
	CHECK(r == 0);
	hv_console_close(con2);
	CHECK(hv_console_open(c, "hvt-no-such-domain", on_console, NULL,
			      &con, &err) == -ENOENT);
	free(err);
	hv_close(c2);
}

static void test_qemu(void)
{
	struct hv_conn *c = NULL;
	struct hv_domain_info info;
	enum hv_state st;
	char *err = NULL, *v = NULL, *vv = NULL, *reply = NULL;
	char uuid1[HV_UUID_STRLEN + 1];
	int r;

	r = hv_open(uri, &(struct hv_options){ .timeout_ms = 10000 },
		    &c, &err);
	if (r < 0)
		fprintf(stderr, "hv_open: %s\n", err);
	REQUIRE(r == 0);
	REQUIRE(hv_subscribe(c, on_event, NULL) == 0);
	CHECK(hv_subscribe(c, on_event, NULL) == -EBUSY);

	/* Defined behind our back. */
	define_domain();
	CHECK(wait_event(HV_EVENT_DEFINED, 0));
	compare_list(c, uri, false);
	CHECK(hv_lookup(c, dom, &info, &err) == 0);
	CHECK(info.state == HV_STATE_SHUTOFF && info.id == -1);
	strcpy(uuid1, info.uuid);
	CHECK(hv_version(c, dom, &v, &err) == -ENODATA);
	CHECK((hv_verbs(c, dom) & HV_VERB_BIT(HV_VERB_START)) != 0);
	{
		struct hv_console *con = NULL;

		CHECK(hv_console_open(c, dom, on_console, NULL, &con, &err) ==
		      -ENODATA);
	}

	/* Started by us. */
	r = hv_control(c, dom, HV_VERB_START, &err);
	if (r < 0)
		fprintf(stderr, "start: %s\n", err);
	REQUIRE(r == 0);
	CHECK(wait_event(HV_EVENT_STATE, HV_STATE_RUNNING));
	expect_virsh_state("running");
	CHECK(hv_state(c, dom, &st, &err) == 0 && st == HV_STATE_RUNNING);
	CHECK(hv_lookup(c, dom, &info, &err) == 0 && info.id > 0);
	compare_list(c, uri, false);

	CHECK(hv_version(c, dom, &v, &err) == 0);
	CHECK(query_version_virsh(&vv) == 0);
	CHECK(v && vv && !strcmp(v, vv));
	fprintf(stderr, "version: ours %s, virsh %s\n", v, vv);
	free(v);
	free(vv);
	check_console(c);

	/* Raw QMP: any id of ours is dropped, libvirt's is not shown. */
	CHECK(hv_qmp(c, dom, "{\"execute\":\"query-status\",\"id\":42}", &reply,
		     &err) == 0);
	CHECK(reply && strstr(reply, "\"return\"") && strstr(reply, "running") &&
	      !strstr(reply, "\"id\""));
	free(reply);
	reply = NULL;
	CHECK(hv_qmp(c, dom, "{\"execute\":\"no-such-command\"}", &reply,
		     &err) == 0);
	CHECK(reply && strstr(reply, "CommandNotFound") &&
	      !strstr(reply, "\"id\""));
	free(reply);
	reply = NULL;
	CHECK(hv_qmp(c, dom, "[1]", &reply, &err) == -EINVAL);

	char *xml = NULL;

	CHECK(hv_xml(c, dom, &xml, &err) == 0);
	CHECK(xml && strstr(xml, dom) && strstr(xml, uuid1));
	free(xml);

	/* Paused and resumed by us. */
	CHECK(hv_control(c, dom, HV_VERB_PAUSE, &err) == 0);
	expect_virsh_state("paused");
	CHECK(wait_event(HV_EVENT_STATE, HV_STATE_PAUSED));
	CHECK(hv_control(c, dom, HV_VERB_RESUME, &err) == 0);
	expect_virsh_state("running");
	CHECK(wait_event(HV_EVENT_STATE, HV_STATE_RUNNING));
	CHECK(saw_monitor_event("STOP") && saw_monitor_event("RESUME"));

	/* A verb the state forbids: libvirt's error and message. */
	free(err);
	err = NULL;
	CHECK(hv_control(c, dom, HV_VERB_RESUME, &err) == -EBUSY);
	CHECK(err && strstr(err, "not valid"));
	fprintf(stderr, "resume while running: %s\n", err ? err : "");

	/* Behind our back. */
	CHECK(sh(NULL, "virsh -q -c \"$HVT_URI\" suspend %s >/dev/null", dom) == 0);
	CHECK(wait_event(HV_EVENT_STATE, HV_STATE_PAUSED));
	CHECK(hv_state(c, dom, &st, &err) == 0 && st == HV_STATE_PAUSED);
	CHECK(sh(NULL, "virsh -q -c \"$HVT_URI\" resume %s >/dev/null", dom) == 0);
	CHECK(wait_event(HV_EVENT_STATE, HV_STATE_RUNNING));
	CHECK(sh(NULL, "virsh -q -c \"$HVT_URI\" destroy %s >/dev/null", dom) == 0);
	CHECK(wait_event(HV_EVENT_STATE, HV_STATE_SHUTOFF));
	CHECK(hv_state(c, dom, &st, &err) == 0 && st == HV_STATE_SHUTOFF);

	/* Started again, destroyed by us. */
	CHECK(sh(NULL, "virsh -q -c \"$HVT_URI\" start %s >/dev/null", dom) == 0);
	CHECK(wait_event(HV_EVENT_STATE, HV_STATE_RUNNING));
	CHECK(hv_control(c, dom, HV_VERB_DESTROY, &err) == 0);
	expect_virsh_state("shut off");
	CHECK(wait_event(HV_EVENT_STATE, HV_STATE_SHUTOFF));
	free(err);
	err = NULL;
	CHECK(hv_control(c, dom, HV_VERB_DESTROY, &err) == -EBUSY);
	CHECK(err != NULL);

	/* Undefined behind our back, then redefined under the same name with
	 * a new uuid: the cached uuid is stale and must be refreshed. */
	CHECK(sh(NULL, "virsh -q -c \"$HVT_URI\" undefine %s >/dev/null", dom) == 0);
	CHECK(wait_event(HV_EVENT_UNDEFINED, 0));
	CHECK(hv_state(c, dom, &st, &err) == -ENOENT);
	define_domain();
	CHECK(wait_event(HV_EVENT_DEFINED, 0));
	CHECK(hv_lookup(c, dom, &info, &err) == 0 &&
	      strcmp(info.uuid, uuid1) != 0);
	CHECK(hv_state(c, dom, &st, &err) == 0 && st == HV_STATE_SHUTOFF);

	free(err);
	hv_close(c);
}

int main(void)
{
	struct stat st;

	if (stat("/usr/sbin/libvirtd", &st) < 0 &&
	    stat("/usr/sbin/virtqemud", &st) < 0) {
		fprintf(stderr, "no libvirtd on this machine\n");
		return 77;
	}
	const char *dir = getenv("HVFS_TEST_LIBVIRTD");

	if (!dir) {
		fprintf(stderr, "no private libvirtd: run me as "
				"`tests/libvirtd.sh run test-libvirt-live`\n");
		return 1;
	}
	snprintf(sock, sizeof(sock), "%s/run/libvirt-sock", dir);
	snprintf(uri, sizeof(uri), "qemu+unix:///system?socket=%s", sock);
	snprintf(test_uri, sizeof(test_uri), "test+unix:///default?socket=%s",
		 sock);
	setenv("HVT_URI", uri, 1);
	setenv("HVT_TEST_URI", test_uri, 1);
	if (stat(sock, &st) < 0 || sh(NULL, "virsh -c \"$HVT_URI\" version "
					    ">/dev/null 2>&1") != 0) {
		fprintf(stderr, "the private libvirtd does not answer at %s\n",
			sock);
		return 1;
	}
	snprintf(dom, sizeof(dom), "hvt-lv-%d", (int)getpid());
	snprintf(xml_path, sizeof(xml_path), "/tmp/%s.xml", dom);
	atexit(cleanup);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);

	test_test_driver();
	test_qemu();

	return check_finish("test-libvirt-live");
}
