/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The vrpc client against the scripted mock libvirtd of tests/mock
 * (mock-vrpc.h): a thread serving a UNIX socket in a temporary directory
 * (or TCP), each scenario a script of expected calls
 * and canned answers. A call the script does not expect fails the test. This
 * covers what a real libvirtd will not do on demand: error replies on cue,
 * events between a call and its reply, out-of-order replies, split reads,
 * a connection dropped mid-reply, a stalled peer, lying length words; and
 * statistics through hv.h with names libvirt itself would refuse.
 */
#include <errno.h>
#include <pthread.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mock-util.h"
#include "hv.h"
#include "mock-vrpc.h"
#include "vrpc.h"
#include "../check.h"

static void mock_finish(struct mock_vrpc *m)
{
	mock_vrpc_finish(m);
	CHECK(!m->failed);
}

/* ---- the client side ---- */

struct recorder {
	pthread_mutex_t lock;
	int events, lost;
	int last_proc;
	char last_name[64];
};

static void record(void *ud, const struct vrpc_header *h, const uint8_t *pl,
		   size_t n)
{
	struct recorder *r = ud;

	pthread_mutex_lock(&r->lock);
	if (!h) {
		r->lost++;
	} else {
		vrpc_domain_event_callback_lifecycle_msg msg;

		r->events++;
		r->last_proc = h->proc;
		memset(&msg, 0, sizeof(msg));
		if (vrpc_payload_decode(pl, n,
			VRPC_XDR(xdr_vrpc_domain_event_callback_lifecycle_msg),
			&msg) == 0) {
			snprintf(r->last_name, sizeof(r->last_name), "%s",
				 msg.dom.name);
			xdr_free(VRPC_XDR(xdr_vrpc_domain_event_callback_lifecycle_msg),
				 &msg);
		}
	}
	pthread_mutex_unlock(&r->lock);
}

/* LOOKUP_BY_NAME(name); *ret_name gets the name the server answered. */
/* LOOKUP_BY_NAME; ret_late as for vrpc_call_tracked() (may be NULL). */
static int lookup_tracked(struct vrpc *c, const char *name, char **ret_name,
			  int64_t *ret_late, char **err)
{
	vrpc_domain_lookup_by_name_args a = { .name = (char *)name };
	vrpc_domain_lookup_ret r;
	int rc;

	memset(&r, 0, sizeof(r));
	rc = vrpc_call_tracked(c, VRPC_PROGRAM_REMOTE,
			       VRPC_PROC_DOMAIN_LOOKUP_BY_NAME,
			       VRPC_XDR(xdr_vrpc_domain_lookup_by_name_args),
			       &a, VRPC_XDR(xdr_vrpc_domain_lookup_ret), &r,
			       ret_late, err);
	if (rc == 0) {
		if (ret_name)
			*ret_name = strdup(r.dom.name);
		xdr_free(VRPC_XDR(xdr_vrpc_domain_lookup_ret), &r);
	}
	return rc;
}

static int lookup(struct vrpc *c, const char *name, char **ret_name,
		  char **err)
{
	return lookup_tracked(c, name, ret_name, NULL, err);
}

/* ---- scenarios ---- */

static void script_error(struct mock_vrpc *m)
{
	struct vrpc_header h;

	if (!mock_vrpc_handshake(m, false))
		return;
	if (mock_vrpc_expect_lookup(m, &h, NULL))
		mock_vrpc_reply_error(m, &h, 42, "Domain not found: nope");
	if (mock_vrpc_expect_lookup(m, &h, NULL))
		mock_vrpc_reply_error(m, &h, 55, "Requested operation is not valid");
	mock_vrpc_expect_close(m);
	mock_vrpc_expect_eof(m);
}

static void test_error_reply(void)
{
	struct mock_vrpc m;
	struct vrpc *c = NULL;
	char *err = NULL;

	mock_vrpc_start(&m, script_error, false);
	CHECK(vrpc_open(m.uri, 2000, NULL, NULL, &c, &err) == 0);
	CHECK(lookup(c, "nope", NULL, &err) == -ENOENT);
	CHECK(err && !strcmp(err, "Domain not found: nope"));
	CHECK(lookup(c, "busy", NULL, &err) == -EBUSY);
	CHECK(err && !strcmp(err, "Requested operation is not valid"));
	vrpc_close(c);
	free(err);
	mock_finish(&m);
}

static void script_event_first(struct mock_vrpc *m)
{
	struct vrpc_header h;

	if (!mock_vrpc_handshake(m, false))
		return;
	if (mock_vrpc_expect_lookup(m, &h, NULL)) {
		mock_vrpc_lifecycle_event(m, "evdom", 3);
		mock_vrpc_lookup_reply(m, &h, "dom1");
	}
	mock_vrpc_expect_close(m);
	mock_vrpc_expect_eof(m);
}

static void test_event_before_reply(void)
{
	struct recorder rec = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct mock_vrpc m;
	struct vrpc *c = NULL;
	char *name = NULL;

	mock_vrpc_start(&m, script_event_first, false);
	CHECK(vrpc_open(m.uri, 2000, record, &rec, &c, NULL) == 0);
	CHECK(lookup(c, "dom1", &name, NULL) == 0);
	CHECK(name && !strcmp(name, "dom1"));
	/* The reader handles packets in order: the event came first. */
	pthread_mutex_lock(&rec.lock);
	CHECK(rec.events == 1 && rec.lost == 0);
	CHECK(rec.last_proc == VRPC_PROC_DOMAIN_EVENT_CALLBACK_LIFECYCLE);
	CHECK(!strcmp(rec.last_name, "evdom"));
	pthread_mutex_unlock(&rec.lock);
	free(name);
	vrpc_close(c);
	CHECK(rec.lost == 0); /* closing is not losing */
	mock_finish(&m);
}

static void script_out_of_order(struct mock_vrpc *m)
{
	struct vrpc_header h1, h2;
	char *n1 = NULL, *n2 = NULL;

	if (!mock_vrpc_handshake(m, false))
		return;
	if (mock_vrpc_expect_lookup(m, &h1, &n1) && mock_vrpc_expect_lookup(m, &h2, &n2)) {
		if (h1.serial == h2.serial)
			mock_vrpc_fail(m, "two calls with serial %u", h1.serial);
		mock_vrpc_lookup_reply(m, &h2, n2);
		usleep(50000);
		mock_vrpc_lookup_reply(m, &h1, n1);
	}
	free(n1);
	free(n2);
	mock_vrpc_expect_close(m);
	mock_vrpc_expect_eof(m);
}

struct caller {
	struct vrpc *c;
	const char *name;
	int r;
	char *got;
};

static void *caller_main(void *arg)
{
	struct caller *k = arg;

	k->r = lookup(k->c, k->name, &k->got, NULL);
	return NULL;
}

static void test_out_of_order(void)
{
	struct mock_vrpc m;
	struct vrpc *c = NULL;
	struct caller a = { .name = "alpha" }, b = { .name = "beta" };
	pthread_t ta, tb;

	mock_vrpc_start(&m, script_out_of_order, false);
	CHECK(vrpc_open(m.uri, 3000, NULL, NULL, &c, NULL) == 0);
	a.c = b.c = c;
	pthread_create(&ta, NULL, caller_main, &a);
	pthread_create(&tb, NULL, caller_main, &b);
	pthread_join(ta, NULL);
	pthread_join(tb, NULL);
	CHECK(a.r == 0 && a.got && !strcmp(a.got, "alpha"));
	CHECK(b.r == 0 && b.got && !strcmp(b.got, "beta"));
	free(a.got);
	free(b.got);
	vrpc_close(c);
	mock_finish(&m);
}

static void script_split(struct mock_vrpc *m)
{
	struct vrpc_header h;
	uint8_t *buf;
	size_t n = 0;

	if (!mock_vrpc_handshake(m, false))
		return;
	if (mock_vrpc_expect_lookup(m, &h, NULL)) {
		/* 2 bytes of the length word, then the rest in three reads. */
		buf = mock_vrpc_lookup_packet(m, &h, "split-domain", &n);
		if (buf) {
			const size_t cuts[] = { 0, 2, 5, 30, n };

			for (size_t i = 0; i + 1 < sizeof(cuts) / sizeof(*cuts); i++) {
				mock_vrpc_send(m, buf + cuts[i], cuts[i + 1] - cuts[i]);
				usleep(20000);
			}
		}
		free(buf);
	}
	mock_vrpc_expect_close(m);
	mock_vrpc_expect_eof(m);
}

static void test_split_reply(void)
{
	struct mock_vrpc m;
	struct vrpc *c = NULL;
	char *name = NULL;

	mock_vrpc_start(&m, script_split, false);
	CHECK(vrpc_open(m.uri, 2000, NULL, NULL, &c, NULL) == 0);
	CHECK(lookup(c, "split-domain", &name, NULL) == 0);
	CHECK(name && !strcmp(name, "split-domain"));
	free(name);
	vrpc_close(c);
	mock_finish(&m);
}

static bool expect_register(struct mock_vrpc *m)
{
	vrpc_connect_domain_event_callback_register_any_args a;
	vrpc_connect_domain_event_callback_register_any_ret r = { 99 };
	struct vrpc_header h;

	memset(&a, 0, sizeof(a));
	if (!mock_vrpc_expect(m, VRPC_PROGRAM_REMOTE,
		VRPC_PROC_CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY, &h,
		VRPC_XDR(xdr_vrpc_connect_domain_event_callback_register_any_args),
		&a))
		return false;
	if (a.eventID != 0 || a.dom)
		mock_vrpc_fail(m, "register: event %d", a.eventID);
	xdr_free(VRPC_XDR(xdr_vrpc_connect_domain_event_callback_register_any_args),
		 &a);
	mock_vrpc_reply(m, &h,
		   VRPC_XDR(xdr_vrpc_connect_domain_event_callback_register_any_ret),
		   &r);
	return true;
}

static void script_drop(struct mock_vrpc *m)
{
	struct vrpc_header h;
	uint8_t *buf;
	size_t n = 0;

	if (!mock_vrpc_handshake(m, false) || !expect_register(m))
		return;
	if (mock_vrpc_expect_lookup(m, &h, NULL)) {
		buf = mock_vrpc_lookup_packet(m, &h, "dropped", &n);
		if (buf)
			mock_vrpc_send(m, buf, n / 2);
		free(buf);
		usleep(50000);
	}
	mock_vrpc_hangup(m);

	/* The client reconnects and registers again before its call. */
	if (!mock_vrpc_accept(m) || !mock_vrpc_handshake(m, false) || !expect_register(m))
		return;
	if (mock_vrpc_expect_lookup(m, &h, NULL))
		mock_vrpc_lookup_reply(m, &h, "again");
	/* Now libvirtd goes away for good. */
	mock_vrpc_unlisten(m);
	mock_vrpc_hangup(m);
}

static void test_drop_and_reconnect(void)
{
	struct recorder rec = { .lock = PTHREAD_MUTEX_INITIALIZER };
	vrpc_connect_domain_event_callback_register_any_args ra = { 0, NULL };
	struct mock_vrpc m;
	struct vrpc *c = NULL;
	char *name = NULL, *err = NULL;
	int64_t t0;
	int r;

	mock_vrpc_start(&m, script_drop, false);
	CHECK(vrpc_open(m.uri, 3000, record, &rec, &c, NULL) == 0);
	CHECK(vrpc_call_persistent(c, VRPC_PROGRAM_REMOTE,
		VRPC_PROC_CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY,
		VRPC_XDR(xdr_vrpc_connect_domain_event_callback_register_any_args),
		&ra, NULL) == 0);
	t0 = mock_now_ms();
	r = lookup(c, "dropped", NULL, &err);
	CHECK(r == -ENOTCONN);
	CHECK(mock_now_ms() - t0 < 1000);
	CHECK(err && strstr(err, "lost"));
	usleep(20000);
	pthread_mutex_lock(&rec.lock);
	CHECK(rec.lost == 1);
	pthread_mutex_unlock(&rec.lock);

	CHECK(lookup(c, "again", &name, &err) == 0);
	CHECK(name && !strcmp(name, "again"));
	free(name);

	/* Wait for the mock to go away, then: no hang, an error at once. */
	pthread_join(m.thread, NULL);
	usleep(20000);
	t0 = mock_now_ms();
	r = lookup(c, "gone", NULL, &err);
	CHECK(r == -ECONNREFUSED || r == -ENOTCONN);
	CHECK(mock_now_ms() - t0 < 500);
	t0 = mock_now_ms();
	r = lookup(c, "gone", NULL, &err);
	CHECK(r == -ECONNREFUSED);
	CHECK(mock_now_ms() - t0 < 500);
	free(err);
	vrpc_close(c);
	m.thread = pthread_self(); /* already joined */
	mock_vrpc_unlisten(&m);
	rmdir(m.dir);
	CHECK(!m.failed);
}

static void script_stall(struct mock_vrpc *m)
{
	struct vrpc_header h1, h2;

	if (!mock_vrpc_handshake(m, false))
		return;
	if (mock_vrpc_expect_lookup(m, &h1, NULL) && mock_vrpc_expect_lookup(m, &h2, NULL)) {
		/* The late reply to the first call, then the second's. */
		mock_vrpc_lookup_reply(m, &h1, "late");
		mock_vrpc_lookup_reply(m, &h2, "second");
	}
	mock_vrpc_expect_close(m);
	mock_vrpc_expect_eof(m);
}

/* The late handler's record (reader thread). */
static int64_t late_serial = -1;
static int late_code = -2, late_calls;

static void record_late(void *userdata, uint32_t serial, int error_code)
{
	late_serial = serial;
	late_code = error_code;
	late_calls++;
}

static void test_stall(void)
{
	struct mock_vrpc m;
	struct vrpc *c = NULL;
	char *name = NULL, *err = NULL;
	int64_t t0, dt, late = -1;

	mock_vrpc_start(&m, script_stall, false);
	CHECK(vrpc_open(m.uri, 300, NULL, NULL, &c, NULL) == 0);
	vrpc_set_late_handler(c, record_late);
	t0 = mock_now_ms();
	CHECK(lookup_tracked(c, "first", NULL, &late, &err) == -ETIMEDOUT);
	dt = mock_now_ms() - t0;
	CHECK(dt >= 290 && dt < 1000);
	CHECK(err && strstr(err, "in time"));
	CHECK(late >= 0); /* sent, then timed out: its serial */
	CHECK(lookup(c, "second", &name, NULL) == 0);
	CHECK(name && !strcmp(name, "second"));
	/* The late reply came before the second's, to the handler. */
	CHECK(late_calls == 1 && late_serial == late && late_code == 0);
	free(name);
	free(err);
	vrpc_close(c);
	mock_finish(&m);
}

static uint32_t lying_len;

static void script_lying_len(struct mock_vrpc *m)
{
	struct vrpc_header h;

	if (!mock_vrpc_handshake(m, false))
		return;
	if (mock_vrpc_expect_lookup(m, &h, NULL)) {
		uint8_t pkt[VRPC_HEADER_SIZE + 8] = { 0 };

		h.len = lying_len;
		h.type = VRPC_REPLY;
		vrpc_header_encode(&h, pkt);
		mock_vrpc_send(m, pkt, sizeof(pkt));
	}
	/* The client must hang up on us; no CONNECT_CLOSE after that. */
	mock_vrpc_expect_eof(m);
}

static void test_lying_len(uint32_t len, int want)
{
	struct mock_vrpc m;
	struct vrpc *c = NULL;
	char *err = NULL;
	int64_t t0;

	lying_len = len;
	mock_vrpc_start(&m, script_lying_len, false);
	CHECK(vrpc_open(m.uri, 2000, NULL, NULL, &c, NULL) == 0);
	t0 = mock_now_ms();
	CHECK(lookup(c, "x", NULL, &err) == want);
	CHECK(mock_now_ms() - t0 < 1000);
	CHECK(err && strstr(err, "protocol"));
	free(err);
	vrpc_close(c);
	mock_finish(&m);
}

static void script_keepalive(struct mock_vrpc *m)
{
	struct vrpc_header h;

	if (!mock_vrpc_handshake(m, true))
		return;
	if (mock_vrpc_expect_lookup(m, &h, NULL))
		mock_vrpc_lookup_reply(m, &h, "after-ping");
	mock_vrpc_expect_close(m);
	mock_vrpc_expect_eof(m);
}

static void test_keepalive(bool tcp)
{
	struct mock_vrpc m;
	struct vrpc *c = NULL;
	char *name = NULL;

	if (tcp)
		mock_vrpc_start(&m, script_keepalive, true);
	else
		mock_vrpc_start(&m, script_keepalive, false);
	CHECK(vrpc_open(m.uri, 2000, NULL, NULL, &c, NULL) == 0);
	CHECK(lookup(c, "after-ping", &name, NULL) == 0);
	free(name);
	vrpc_close(c);
	mock_finish(&m);
}

static void script_unexpected(struct mock_vrpc *m)
{
	struct vrpc_header h;

	if (!mock_vrpc_handshake(m, false))
		return;
	/* Refuse a call the test did not announce (here: anything). */
	mock_vrpc_expect_close(m);
	(void)h;
}

static void test_mock_catches_unexpected(void)
{
	struct mock_vrpc m;
	struct vrpc *c = NULL;

	fprintf(stderr, "(the next mock complaint is expected)\n");
	mock_vrpc_start(&m, script_unexpected, false);
	CHECK(vrpc_open(m.uri, 500, NULL, NULL, &c, NULL) == 0);
	lookup(c, "surprise", NULL, NULL);
	vrpc_close(c);
	pthread_join(m.thread, NULL);
	mock_vrpc_unlisten(&m);
	rmdir(m.dir);
	/* The mock must have noticed. */
	CHECK(m.failed);
}

/* One path of a user's URI; a failure is told on stderr. */
static int user_path(const char *uri, const char *path, const char *direct)
{
	struct vrpc_uri *u = NULL;
	char *err = NULL;
	int bad = vrpc_uri_parse(uri, &u, &err) != 0 || strcmp(u->path, path) ||
		  (direct ? !u->direct || strcmp(u->direct, direct) :
			    u->direct != NULL);

	if (bad)
		fprintf(stderr, "%s: %s %s, not %s %s (%s)\n", uri,
			u ? u->path : "-", u && u->direct ? u->direct : "-",
			path, direct ? direct : "-", err ? err : "");
	vrpc_uri_free(u);
	free(err);
	return bad;
}

/* qemu:///session refused, the message naming path and saying what. */
static int connect_says(const char *path, const char *what)
{
	struct vrpc *c = NULL;
	char *err = NULL;
	int bad = vrpc_open("qemu:///session", 1000, NULL, NULL, &c, &err) !=
		  -ECONNREFUSED || !err || !strstr(err, path) ||
		  !strstr(err, what);

	if (bad)
		fprintf(stderr, "connect: %s\n", err ? err : "no message");
	free(err);
	return bad;
}

/*
 * The user's daemon (a user other than root): its sockets under
 * $XDG_RUNTIME_DIR, $XDG_CACHE_HOME or ~/.cache, virtqemud's chosen at each
 * connect when it exists, and the message when none runs. As root this
 * runs in a child as nobody. Returns the number of failures.
 */
static int user_session_checks(void)
{
	char dir[] = "/tmp/test-vrpc-XXXXXX", path[256];
	struct passwd *pw;
	int bad = 0;

	setenv("XDG_RUNTIME_DIR", "/nonexistent/rt", 1);
	bad += user_path("qemu:///session", "/nonexistent/rt/libvirt/libvirt-sock",
			 "/nonexistent/rt/libvirt/virtqemud-sock");
	bad += user_path("test+unix:///default",
			 "/nonexistent/rt/libvirt/libvirt-sock", NULL);
	bad += user_path("qemu:///system", "/var/run/libvirt/libvirt-sock",
			 "/var/run/libvirt/virtqemud-sock");
	unsetenv("XDG_RUNTIME_DIR");
	setenv("XDG_CACHE_HOME", "/c", 1);
	bad += user_path("qemu+unix:///session", "/c/libvirt/libvirt-sock",
			 "/c/libvirt/virtqemud-sock");
	unsetenv("XDG_CACHE_HOME");
	setenv("HOME", "/h", 1);
	bad += user_path("qemu:///session", "/h/.cache/libvirt/libvirt-sock",
			 "/h/.cache/libvirt/virtqemud-sock");
	/* Without HOME: the password database's home. */
	unsetenv("HOME");
	pw = getpwuid(geteuid());
	bad += !pw;
	if (pw) {
		char direct[256];

		snprintf(path, sizeof(path), "%s/.cache/libvirt/libvirt-sock",
			 pw->pw_dir);
		snprintf(direct, sizeof(direct),
			 "%s/.cache/libvirt/virtqemud-sock", pw->pw_dir);
		bad += user_path("qemu:///session", path, direct);
	}

	if (!mkdtemp(dir))
		return bad + 1;
	setenv("XDG_RUNTIME_DIR", dir, 1);
	snprintf(path, sizeof(path), "%s/libvirt", dir);
	bad += mkdir(path, 0700) != 0;
	/* No daemon: libvirtd's socket is named, with whose daemon is missing. */
	snprintf(path, sizeof(path), "%s/libvirt/libvirt-sock", dir);
	bad += connect_says(path, "session daemon");
	/* virtqemud's socket appears (a file here): the next connect uses it. */
	snprintf(path, sizeof(path), "%s/libvirt/virtqemud-sock", dir);
	bad += mknod(path, S_IFREG | 0600, 0) != 0;
	bad += connect_says(path, path);
	unlink(path);
	snprintf(path, sizeof(path), "%s/libvirt", dir);
	rmdir(path);
	rmdir(dir);
	return bad;
}

static int session_as_user(void)
{
	int status;
	pid_t pid;

	if (geteuid() != 0)
		return user_session_checks();
	pid = fork();
	if (pid == 0) {
		if (setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534))
			_exit(100);
		_exit(user_session_checks() ? 1 : 0);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid)
		return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_uris(void)
{
	struct vrpc_uri *u = NULL;
	char *err = NULL;

	CHECK(vrpc_uri_parse("qemu:///system", &u, &err) == 0);
	CHECK(u && u->transport == VRPC_TRANSPORT_UNIX &&
	      !strcmp(u->name, "qemu:///system"));
	u = vrpc_uri_free(u);
	CHECK(vrpc_uri_parse("test+unix:///default", &u, &err) == 0);
	CHECK(u && !strcmp(u->name, "test:///default") &&
	      !strcmp(u->path, "/var/run/libvirt/libvirt-sock"));
	u = vrpc_uri_free(u);
	CHECK(vrpc_uri_parse("qemu+unix:///system?socket=/x/y", &u, &err) == 0);
	CHECK(u && !strcmp(u->path, "/x/y") && !strcmp(u->name, "qemu:///system"));
	u = vrpc_uri_free(u);
	CHECK(vrpc_uri_parse("qemu+tcp://host.example/system", &u, &err) == 0);
	CHECK(u && u->transport == VRPC_TRANSPORT_TCP &&
	      !strcmp(u->host, "host.example") && !strcmp(u->port, "16509"));
	u = vrpc_uri_free(u);
	CHECK(vrpc_uri_parse("qemu+tcp://[::1]:1234/system", &u, &err) == 0);
	CHECK(u && !strcmp(u->host, "::1") && !strcmp(u->port, "1234"));
	u = vrpc_uri_free(u);
	/* tls: port 16514, libvirt's parameters; a bare host means TLS. */
	CHECK(vrpc_uri_parse("qemu+tls://h/system", &u, &err) == 0);
	CHECK(u && u->transport == VRPC_TRANSPORT_TLS && !strcmp(u->host, "h") &&
	      !strcmp(u->port, "16514") && !u->pkipath && !u->no_verify &&
	      !strcmp(u->name, "qemu:///system"));
	u = vrpc_uri_free(u);
	CHECK(vrpc_uri_parse("qemu://h:1234/system?pkipath=/p&no_verify=1", &u,
			     &err) == 0);
	CHECK(u && u->transport == VRPC_TRANSPORT_TLS && !strcmp(u->port, "1234") &&
	      !strcmp(u->pkipath, "/p") && u->no_verify);
	u = vrpc_uri_free(u);
	CHECK(vrpc_uri_parse("qemu+tls:///system", &u, &err) == -EINVAL);
	CHECK(vrpc_uri_parse("qemu+tls://h/system?socket=/s", &u, &err) == -EINVAL);
	CHECK(vrpc_uri_parse("qemu+tls://h/system?keyfile=/k", &u, &err) == -EINVAL);
	CHECK(vrpc_uri_parse("qemu+tls://h/system?pkipath=", &u, &err) == -EINVAL);
	CHECK(vrpc_uri_parse("qemu+ssh://h/system?pkipath=/p", &u, &err) == -EINVAL);
	CHECK(vrpc_uri_parse("qemu+foo://h/system", &u, &err) == -EOPNOTSUPP);
	CHECK(err && strstr(err, "'foo'"));
	/* ssh: user, port, libvirt's parameters. */
	CHECK(vrpc_uri_parse("qemu+ssh://h/system", &u, &err) == 0);
	CHECK(u && u->transport == VRPC_TRANSPORT_SSH && !strcmp(u->host, "h") &&
	      !u->port && !u->user && !u->path && !u->keyfile && !u->netcat &&
	      !u->no_verify && u->proxy == VRPC_SSH_PROXY_AUTO &&
	      !strcmp(u->name, "qemu:///system"));
	u = vrpc_uri_free(u);
	CHECK(vrpc_uri_parse("qemu+ssh://me@h:2222/session?keyfile=/k&"
			     "no_verify=1&no_tty=1&socket=/s&netcat=ncat&"
			     "proxy=netcat", &u, &err) == 0);
	CHECK(u && !strcmp(u->user, "me") && !strcmp(u->port, "2222") &&
	      !strcmp(u->keyfile, "/k") && u->no_verify &&
	      !strcmp(u->path, "/s") && !strcmp(u->netcat, "ncat") &&
	      u->proxy == VRPC_SSH_PROXY_NETCAT && u->session &&
	      !strcmp(u->name, "qemu:///session"));
	u = vrpc_uri_free(u);
	CHECK(vrpc_uri_parse("qemu+ssh://-oProxyCommand=x/system", &u, &err) == -EINVAL);
	CHECK(vrpc_uri_parse("qemu+ssh://-x@h/system", &u, &err) == -EINVAL);
	CHECK(vrpc_uri_parse("qemu+ssh://@h/system", &u, &err) == -EINVAL);
	CHECK(vrpc_uri_parse("qemu+ssh:///system", &u, &err) == -EINVAL);
	CHECK(vrpc_uri_parse("qemu+ssh://h/system?proxy=x", &u, &err) == -EINVAL);
	CHECK(vrpc_uri_parse("qemu+ssh://h/system?no_verify=2", &u, &err) == -EINVAL);
	CHECK(vrpc_uri_parse("qemu+ssh://h/system?keyfile=", &u, &err) == -EINVAL);
	CHECK(vrpc_uri_parse("qemu+tcp://h/system?socket=/s", &u, &err) == -EINVAL);
	/* A remote URI with a path that is no driver's (found by fuzz-uri). */
	CHECK(vrpc_uri_parse("qemu+tcp://h/bogus", &u, &err) == -EINVAL);
	CHECK(vrpc_uri_parse("qemu://h:1/s:stem", &u, &err) == -EINVAL);
	{
		char longer[200];

		snprintf(longer, sizeof(longer),
			 "qemu+unix:///system?socket=/%0120d", 0);
		CHECK(vrpc_uri_parse(longer, &u, &err) == -EINVAL);
		CHECK(err && strstr(err, "longer than a UNIX socket"));
	}
	CHECK(vrpc_uri_parse("qemu+unix:///system?keyfile=/k", &u, &err) == -EINVAL);
	/* Root's /session is the system daemon's, as for libvirt's client. */
	if (geteuid() == 0) {
		setenv("XDG_RUNTIME_DIR", "/nonexistent/rt", 1);
		CHECK(vrpc_uri_parse("qemu:///session", &u, &err) == 0);
		CHECK(u && u->transport == VRPC_TRANSPORT_UNIX && u->session &&
		      !strcmp(u->path, "/var/run/libvirt/libvirt-sock") &&
		      !strcmp(u->direct, "/var/run/libvirt/virtqemud-sock") &&
		      !strcmp(u->name, "qemu:///session"));
		u = vrpc_uri_free(u);
		unsetenv("XDG_RUNTIME_DIR");
	}
	CHECK(session_as_user() == 0);
	CHECK(vrpc_uri_parse("qemu+unix:///session?socket=/x", &u, &err) == 0);
	CHECK(u && !strcmp(u->path, "/x"));
	u = vrpc_uri_free(u);
	CHECK(vrpc_uri_parse("qemu:///other", &u, &err) == -EINVAL);
	CHECK(vrpc_uri_parse("qemu+tcp:///system", &u, &err) == -EINVAL);
	CHECK(vrpc_uri_parse("qemu+tcp://h:99999x/system", &u, &err) == -EINVAL);
	CHECK(vrpc_uri_parse("qemu+unix:///system?foo=bar", &u, &err) == -EINVAL);
	CHECK(vrpc_uri_parse("xen:///system", &u, &err) == -EINVAL);
	CHECK(vrpc_uri_parse("qmp:x=unix:/p", &u, &err) == -EINVAL);
	CHECK(!vrpc_uri_is_libvirt("qmp-dir:/x") && vrpc_uri_is_libvirt("qemu+tls://h/system"));
	CHECK(u == NULL);
	free(err);

	/* Nobody listens: fails at once. */
	struct vrpc *c = NULL;

	err = NULL;
	CHECK(vrpc_open("qemu+unix:///system?socket=/nonexistent/x", 1000, NULL,
			NULL, &c, &err) == -ECONNREFUSED);
	CHECK(c == NULL && err);
	free(err);
}

/* ---- downloads (DOMAIN_SCREENSHOT's stream) ---- */

static bool expect_screenshot(struct mock_vrpc *m, struct vrpc_header *h)
{
	vrpc_domain_screenshot_args a;
	bool ok;

	memset(&a, 0, sizeof(a));
	ok = mock_vrpc_expect(m, VRPC_PROGRAM_REMOTE, VRPC_PROC_DOMAIN_SCREENSHOT,
			 h, VRPC_XDR(xdr_vrpc_domain_screenshot_args), &a);
	xdr_free(VRPC_XDR(xdr_vrpc_domain_screenshot_args), &a);
	return ok;
}

static void mock_mime(struct mock_vrpc *m, const struct vrpc_header *h)
{
	vrpc_nonnull_string mime = "image/png";
	vrpc_domain_screenshot_ret r = { .mime = &mime };

	mock_vrpc_reply(m, h, VRPC_XDR(xdr_vrpc_domain_screenshot_ret), &r);
}

static void script_download(struct mock_vrpc *m)
{
	struct vrpc_header h;
	vrpc_error e = { .code = 1, .domain = 10, .level = 2 };
	vrpc_nonnull_string msg = "stream broke";
	size_t n = 0;
	uint8_t *buf;

	if (!mock_vrpc_handshake(m, false))
		return;
	/* 1: as libvirtd 9.0 does it: the data before the REPLY, an empty
	 * CONTINUE at the end; the client finishes, we confirm. */
	if (expect_screenshot(m, &h)) {
		mock_vrpc_stream(m, &h, VRPC_CONTINUE, "hello, ", 7);
		mock_vrpc_stream(m, &h, VRPC_CONTINUE, "world", 5);
		mock_mime(m, &h);
		mock_vrpc_stream(m, &h, VRPC_CONTINUE, NULL, 0);
		mock_vrpc_expect_stream(m, &h, VRPC_OK);
		mock_vrpc_stream(m, &h, VRPC_OK, NULL, 0);
	}
	/* 2: more than the client takes: it aborts. */
	if (expect_screenshot(m, &h)) {
		mock_mime(m, &h);
		mock_vrpc_stream(m, &h, VRPC_CONTINUE, "0123456789abcdef", 16);
		mock_vrpc_stream(m, &h, VRPC_CONTINUE, "more", 4);
		mock_vrpc_stream(m, &h, VRPC_CONTINUE, NULL, 0);
		mock_vrpc_expect_stream(m, &h, VRPC_ERROR);
		mock_vrpc_stream(m, &h, VRPC_OK, NULL, 0);
	}
	/* 3: the daemon's side fails mid-stream. */
	if (expect_screenshot(m, &h)) {
		mock_mime(m, &h);
		mock_vrpc_stream(m, &h, VRPC_CONTINUE, "abc", 3);
		e.message = &msg;
		buf = mock_vrpc_packet(m, &h, VRPC_STREAM, VRPC_ERROR,
				  VRPC_XDR(xdr_vrpc_error), &e, &n);
		if (buf)
			mock_vrpc_send(m, buf, n);
		free(buf);
	}
	/* The connection still serves calls. */
	if (mock_vrpc_expect_lookup(m, &h, NULL))
		mock_vrpc_lookup_reply(m, &h, "after");
	mock_vrpc_expect_close(m);
	mock_vrpc_expect_eof(m);
}

static int screenshot(struct vrpc *c, size_t max, uint8_t **data,
		      size_t *len, char **err)
{
	vrpc_domain_screenshot_args a = {
		.dom = { .name = "d", .id = -1 }, .screen = 0, .flags = 0,
	};
	vrpc_domain_screenshot_ret r;
	int rc;

	memset(&r, 0, sizeof(r));
	rc = vrpc_call_download(c, VRPC_PROGRAM_REMOTE,
				VRPC_PROC_DOMAIN_SCREENSHOT,
				VRPC_XDR(xdr_vrpc_domain_screenshot_args), &a,
				VRPC_XDR(xdr_vrpc_domain_screenshot_ret), &r,
				max, data, len, NULL, err);
	if (rc == 0) {
		CHECK(r.mime && !strcmp(*r.mime, "image/png"));
		xdr_free(VRPC_XDR(xdr_vrpc_domain_screenshot_ret), &r);
	}
	return rc;
}

static void test_download(void)
{
	struct mock_vrpc m;
	struct vrpc *c = NULL;
	uint8_t *data = NULL;
	size_t len = 0;
	char *name = NULL, *err = NULL;

	mock_vrpc_start(&m, script_download, false);
	CHECK(vrpc_open(m.uri, 2000, NULL, NULL, &c, NULL) == 0);
	CHECK(screenshot(c, 1000, &data, &len, &err) == 0);
	CHECK(len == 12 && data && !memcmp(data, "hello, world", 12));
	free(data);
	data = NULL;
	CHECK(screenshot(c, 10, &data, &len, &err) == -EFBIG);
	CHECK(!data && err && strstr(err, "exceeds 10 bytes"));
	CHECK(screenshot(c, 1000, &data, &len, &err) == -EIO);
	CHECK(!data && err && !strcmp(err, "stream broke"));
	CHECK(lookup(c, "after", &name, NULL) == 0);
	CHECK(name && !strcmp(name, "after"));
	free(name);
	free(err);
	vrpc_close(c);
	mock_finish(&m);
}

/* ---- streams both ways (DOMAIN_OPEN_CONSOLE) ---- */

static bool expect_console(struct mock_vrpc *m, struct vrpc_header *h)
{
	vrpc_domain_open_console_args a;
	bool ok;

	memset(&a, 0, sizeof(a));
	ok = mock_vrpc_expect(m, VRPC_PROGRAM_REMOTE,
			      VRPC_PROC_DOMAIN_OPEN_CONSOLE, h,
			      VRPC_XDR(xdr_vrpc_domain_open_console_args), &a);
	/* Never FORCE: a user's virsh console is not taken away. */
	if (ok && (a.flags != 0 || a.dev_name))
		mock_vrpc_fail(m, "OPEN_CONSOLE with flags %u", a.flags);
	xdr_free(VRPC_XDR(xdr_vrpc_domain_open_console_args), &a);
	return ok;
}

/* Expects the client's STREAM CONTINUE carrying exactly want. */
static void expect_input(struct mock_vrpc *m, const struct vrpc_header *call,
			 const char *want)
{
	struct vrpc_header h;
	uint8_t *pl = NULL;
	size_t n = 0;

	if (!mock_vrpc_read(m, &h, &pl, &n))
		mock_vrpc_fail(m, "expected console input, got EOF");
	else if (h.type != VRPC_STREAM || h.serial != call->serial ||
		 h.status != VRPC_CONTINUE || n != strlen(want) ||
		 memcmp(pl, want, n) != 0)
		mock_vrpc_fail(m, "unexpected console input (%zu bytes)", n);
	free(pl);
}

static void script_console(struct mock_vrpc *m)
{
	struct vrpc_header h;
	size_t n = 0;
	uint8_t *buf;
	vrpc_error e = { .code = VRPC_ERR_RPC, .domain = 10, .level = 2 };
	vrpc_nonnull_string msg = "console broke";

	if (!mock_vrpc_handshake(m, false))
		return;
	/* 1: output before and after input; the daemon ends it (EOF). */
	if (expect_console(m, &h)) {
		mock_vrpc_reply(m, &h, NULL, NULL);
		mock_vrpc_stream(m, &h, VRPC_CONTINUE, "boot\n", 5);
		expect_input(m, &h, "root\n");
		mock_vrpc_stream(m, &h, VRPC_CONTINUE, "# ", 2);
		mock_vrpc_stream(m, &h, VRPC_CONTINUE, NULL, 0);
	}
	/* 2: another client holds it. */
	if (expect_console(m, &h))
		mock_vrpc_reply_error(m, &h, 9, "Active console session "
				      "exists for this domain");
	/* 3: the daemon's side fails. */
	if (expect_console(m, &h)) {
		mock_vrpc_reply(m, &h, NULL, NULL);
		e.message = &msg;
		buf = mock_vrpc_packet(m, &h, VRPC_STREAM, VRPC_ERROR,
				       VRPC_XDR(xdr_vrpc_error), &e, &n);
		if (buf)
			mock_vrpc_send(m, buf, n);
		free(buf);
	}
	/* 4: the client closes it: an abort. */
	if (expect_console(m, &h)) {
		mock_vrpc_reply(m, &h, NULL, NULL);
		mock_vrpc_expect_stream(m, &h, VRPC_ERROR);
	}
	/* 5: the connection drops under it. */
	if (expect_console(m, &h))
		mock_vrpc_reply(m, &h, NULL, NULL);
}

struct con_rec {
	pthread_mutex_t lock;
	char out[64];
	size_t len;
	int ends, err;
	char msg[64];
};

static void con_output(void *ud, const uint8_t *data, size_t len, int err,
		       const char *msg)
{
	struct con_rec *r = ud;

	pthread_mutex_lock(&r->lock);
	if (len) {
		CHECK(r->ends == 0);
		if (len > sizeof(r->out) - r->len)
			len = sizeof(r->out) - r->len;
		memcpy(r->out + r->len, data, len);
		r->len += len;
	} else {
		r->ends++;
		r->err = err;
		snprintf(r->msg, sizeof(r->msg), "%s", msg ? msg : "");
	}
	pthread_mutex_unlock(&r->lock);
}

/* Waits (5 s at most) until r saw its end; returns the count of ends. */
static int con_wait_end(struct con_rec *r)
{
	int ends = 0;

	for (int i = 0; i < 500 && !ends; i++) {
		pthread_mutex_lock(&r->lock);
		ends = r->ends;
		pthread_mutex_unlock(&r->lock);
		if (!ends)
			usleep(10000);
	}
	return ends;
}

static int open_console(struct vrpc *c, struct con_rec *r,
			struct vrpc_stream **ret, char **err)
{
	vrpc_domain_open_console_args a = {
		.dom = { .name = "d", .id = -1 }, .dev_name = NULL, .flags = 0,
	};

	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&r->lock, NULL);
	return vrpc_stream_open(c, VRPC_PROGRAM_REMOTE,
				VRPC_PROC_DOMAIN_OPEN_CONSOLE,
				VRPC_XDR(xdr_vrpc_domain_open_console_args), &a,
				con_output, r, ret, err);
}

static void test_console_stream(void)
{
	struct mock_vrpc m;
	struct vrpc *c = NULL;
	struct vrpc_stream *st = NULL;
	struct con_rec r;
	char *err = NULL;

	mock_vrpc_start(&m, script_console, false);
	CHECK(vrpc_open(m.uri, 2000, NULL, NULL, &c, NULL) == 0);

	CHECK(open_console(c, &r, &st, &err) == 0);
	for (int i = 0; i < 500 && r.len < 5; i++)
		usleep(10000);
	CHECK(vrpc_stream_send(st, "root\n", 5, &err) == 0);
	CHECK(con_wait_end(&r) == 1);
	CHECK(r.len == 7 && !memcmp(r.out, "boot\n# ", 7) && r.err == 0);
	CHECK(vrpc_stream_send(st, "x", 1, &err) == -EPIPE);
	vrpc_stream_close(st);

	st = NULL;
	CHECK(open_console(c, &r, &st, &err) == -EBUSY);
	CHECK(!st && err && strstr(err, "Active console session"));

	CHECK(open_console(c, &r, &st, &err) == 0);
	CHECK(con_wait_end(&r) == 1);
	CHECK(r.err == -EPROTO && !strcmp(r.msg, "console broke"));
	vrpc_stream_close(st);

	CHECK(open_console(c, &r, &st, &err) == 0);
	vrpc_stream_close(st); /* the mock checks the abort */

	CHECK(open_console(c, &r, &st, &err) == 0);
	CHECK(con_wait_end(&r) == 1 && r.err == -ENOTCONN);
	usleep(100000);
	CHECK(r.ends == 1); /* told once */
	vrpc_stream_close(st);
	free(err);
	vrpc_close(c);
	mock_finish(&m);
}

/* ---- bulk statistics through hv.h (lib/hv-libvirt.c) ---- */

static char long_name[HV_NAME_MAX + 2];
static char long_field[VRPC_TYPED_PARAM_FIELD_LENGTH + 1];

static vrpc_typed_param stats_params[] = {
	{ "state.state", { .type = VRPC_TYPED_PARAM_INT,
			   .vrpc_typed_param_value_u.i = 3 } },
	{ "vcpu.current", { .type = VRPC_TYPED_PARAM_UINT,
			    .vrpc_typed_param_value_u.ui = 2 } },
	{ "x.llong", { .type = VRPC_TYPED_PARAM_LLONG,
		       .vrpc_typed_param_value_u.l = -5 } },
	{ "cpu.time", { .type = VRPC_TYPED_PARAM_ULLONG,
			.vrpc_typed_param_value_u.ul = 12345678901ull } },
	{ "x.double", { .type = VRPC_TYPED_PARAM_DOUBLE,
			.vrpc_typed_param_value_u.d = 0.5 } },
	{ "x.bool", { .type = VRPC_TYPED_PARAM_BOOLEAN,
		      .vrpc_typed_param_value_u.b = 1 } },
	{ "block.0.path", { .type = VRPC_TYPED_PARAM_STRING,
			    .vrpc_typed_param_value_u.s = "/a b\nc" } },
};

/* The groups asked for (docs/fs-layout.md "stats"): not iothread,
 * dirtyrate, vm. */
#define STATS_GROUPS (VRPC_DOMAIN_STATS_STATE | VRPC_DOMAIN_STATS_CPU_TOTAL | \
		      VRPC_DOMAIN_STATS_BALLOON | VRPC_DOMAIN_STATS_VCPU | \
		      VRPC_DOMAIN_STATS_INTERFACE | VRPC_DOMAIN_STATS_BLOCK | \
		      VRPC_DOMAIN_STATS_PERF | VRPC_DOMAIN_STATS_MEMORY)

/* Expects one CONNECT_GET_ALL_DOMAIN_STATS for every domain, the groups
 * above, NOWAIT, and answers with recs after late_ms. */
static void expect_stats_late(struct mock_vrpc *m,
			      vrpc_domain_stats_record *recs, unsigned n,
			      unsigned late_ms)
{
	vrpc_connect_get_all_domain_stats_args a = { 0 };
	vrpc_connect_get_all_domain_stats_ret r = {
		.retStats = { .retStats_len = n, .retStats_val = recs },
	};
	struct vrpc_header h;

	if (!mock_vrpc_expect(m, VRPC_PROGRAM_REMOTE,
			 VRPC_PROC_CONNECT_GET_ALL_DOMAIN_STATS, &h,
			 VRPC_XDR(xdr_vrpc_connect_get_all_domain_stats_args),
			 &a))
		return;
	if (a.doms.doms_len != 0 || a.stats != STATS_GROUPS ||
	    a.flags != VRPC_GET_ALL_DOMAINS_STATS_NOWAIT)
		mock_vrpc_fail(m, "stats call: %u doms, stats %u, flags %#x",
			  a.doms.doms_len, a.stats, a.flags);
	xdr_free(VRPC_XDR(xdr_vrpc_connect_get_all_domain_stats_args),
		 (char *)&a);
	usleep(late_ms * 1000);
	mock_vrpc_reply(m, &h, VRPC_XDR(xdr_vrpc_connect_get_all_domain_stats_ret),
		   &r);
}

static void expect_stats(struct mock_vrpc *m, vrpc_domain_stats_record *recs,
			 unsigned n)
{
	expect_stats_late(m, recs, n, 0);
}

static void script_stats(struct mock_vrpc *m)
{
	vrpc_domain_stats_record recs[3] = {
		{ .dom = { .name = "a", .id = 1 },
		  .params = { 7, stats_params } },
		{ .dom = { .name = long_name, .id = 2 },
		  .params = { 1, stats_params } },
		{ .dom = { .name = "off", .id = -1 },
		  .params = { 0, NULL } },
	};
	vrpc_typed_param bad = { .field = long_field,
				 .value = { .type = VRPC_TYPED_PARAM_INT } };

	if (!mock_vrpc_handshake(m, false))
		return;
	expect_stats(m, recs, 3);
	/* A name longer than libvirt's own limit. */
	recs[0].params = (typeof(recs[0].params)){ 1, &bad };
	expect_stats(m, recs, 1);
	/* A name with a space in it. */
	bad.field = "a b";
	expect_stats(m, recs, 1);
	/* Nothing at all. */
	expect_stats(m, recs, 0);
	/* Later than the connection's timeout (2 s), within the bulk call's
	 * own deadline. */
	expect_stats_late(m, &recs[2], 1, 3000);
	mock_vrpc_expect_close(m);
	mock_vrpc_expect_eof(m);
}

static void test_stats(void)
{
	struct mock_vrpc m;
	struct hv_conn *c = NULL;
	struct hv_stats *v = NULL;
	size_t n = 0;
	char *err = NULL, buf[64];

	memset(long_name, 'n', HV_NAME_MAX + 1);
	memset(long_field, 'f', VRPC_TYPED_PARAM_FIELD_LENGTH);
	mock_vrpc_start(&m, script_stats, false);
	REQUIRE(hv_open(m.uri, &(struct hv_options){ .timeout_ms = 2000 }, &c,
			&err) == 0);
	CHECK(hv_stats_all(c, &v, &n, &err) == 0);
	/* The domain hv.h cannot name is left out, as in listings. */
	CHECK(n == 2 && v && !strcmp(v[0].name, "a") &&
	      !strcmp(v[1].name, "off"));
	CHECK(v && v[0].n == 7 && v[1].n == 0 && v[1].stats == NULL);
	for (size_t i = 0; v && i < v[0].n; i++) {
		static const char *const want[] = {
			"3", "2", "-5", "12345678901", "0.5", "1", "/a b\nc",
		};

		CHECK(!strcmp(v[0].stats[i].key, stats_params[i].field));
		CHECK((int)v[0].stats[i].type == stats_params[i].value.type);
		CHECK(hv_stat_format(&v[0].stats[i], buf, sizeof(buf)) > 0 &&
		      !strcmp(buf, want[i]));
	}
	hv_stats_free(v, n);
	v = NULL;
	n = 99;
	CHECK(hv_stats_all(c, &v, &n, &err) == -EPROTO && v == NULL && n == 99);
	CHECK(err && strstr(err, "malformed"));
	CHECK(hv_stats_all(c, &v, &n, &err) == -EPROTO && v == NULL);
	CHECK(hv_stats_all(c, &v, &n, &err) == 0 && v == NULL && n == 0);
	CHECK(hv_stats_all(c, &v, &n, &err) == 0 && n == 1);
	hv_stats_free(v, n);
	hv_close(c);
	free(err);
	mock_finish(&m);
}

int main(void)
{
	test_uris();
	test_error_reply();
	test_event_before_reply();
	test_out_of_order();
	test_split_reply();
	test_drop_and_reconnect();
	test_stall();
	test_lying_len(0x7fffffff, -EPROTO);
	test_lying_len(VRPC_LEN_MAX + 1, -EPROTO);
	test_lying_len(20, -EPROTO);
	test_keepalive(false);
	test_keepalive(true);
	test_mock_catches_unexpected();
	test_download();
	test_console_stream();
	test_stats();
	return check_finish("test-vrpc-mock");
}
