/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Mock libvirtds: see mock-vrpc.h. */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mock-util.h"
#include "mock-vrpc.h"

#define IO_MS 5000
#define SLICE_MS 100

/* ---- the scripted peer ---- */

void mock_vrpc_fail(struct mock_vrpc *m, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "mock-vrpc: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	m->failed = true;
}

bool mock_vrpc_accept(struct mock_vrpc *m)
{
	m->cfd = mock_accept(m->lfd, IO_MS);
	if (m->cfd < 0)
		mock_vrpc_fail(m, "no client connected");
	return m->cfd >= 0;
}

void mock_vrpc_hangup(struct mock_vrpc *m)
{
	if (m->cfd >= 0)
		close(m->cfd);
	m->cfd = -1;
}

/* Reads exactly n bytes: 1; 0 on EOF at the start, -1 on error or after
 * ms of silence. */
static int read_n(int fd, uint8_t *buf, size_t n, int ms)
{
	size_t off = 0;

	while (off < n) {
		ssize_t r;

		if (!mock_readable(fd, ms))
			return -1;
		r = read(fd, buf + off, n - off);
		if (r <= 0)
			return off == 0 && r == 0 ? 0 : -1;
		off += (size_t)r;
	}
	return 1;
}

static bool read_packet(int fd, int ms, struct vrpc_header *h, uint8_t **pl,
			size_t *n)
{
	uint8_t hdr[VRPC_HEADER_SIZE];

	*pl = NULL;
	if (read_n(fd, hdr, sizeof(hdr), ms) != 1 ||
	    vrpc_header_decode(hdr, sizeof(hdr), h) < 0)
		return false;
	*n = h->len - VRPC_HEADER_SIZE;
	*pl = mock_xalloc(*n + 1);
	if (*n && read_n(fd, *pl, *n, IO_MS) != 1) {
		free(*pl);
		*pl = NULL;
		return false;
	}
	return true;
}

bool mock_vrpc_read(struct mock_vrpc *m, struct vrpc_header *h, uint8_t **pl,
		    size_t *n)
{
	return read_packet(m->cfd, IO_MS, h, pl, n);
}

bool mock_vrpc_expect(struct mock_vrpc *m, uint32_t prog, int32_t proc,
		      struct vrpc_header *h, xdrproc_t fn, void *args)
{
	uint8_t *pl = NULL;
	size_t n = 0;
	bool ok;

	if (m->failed)
		return false;
	if (!mock_vrpc_read(m, h, &pl, &n)) {
		mock_vrpc_fail(m, "expected call %d, got EOF or garbage", proc);
		return false;
	}
	ok = h->prog == prog && h->proc == proc && h->type == VRPC_CALL &&
	     h->vers == 1 && h->status == VRPC_OK;
	if (!ok)
		mock_vrpc_fail(m, "expected call %x/%d, got %x/%d type %d",
			       prog, proc, h->prog, h->proc, h->type);
	if (ok && fn && vrpc_payload_decode(pl, n, fn, args) < 0) {
		mock_vrpc_fail(m, "call %d: undecodable args", proc);
		ok = false;
	}
	free(pl);
	return ok;
}

void mock_vrpc_send(struct mock_vrpc *m, const void *buf, size_t n)
{
	if (!mock_send_all(m->cfd, buf, n))
		mock_vrpc_fail(m, "send failed");
}

static uint8_t *packet(const struct vrpc_header *call, int type, int status,
		       xdrproc_t fn, const void *payload, size_t *ret_n)
{
	struct vrpc_header h = *call;
	uint8_t *buf = NULL;

	h.type = type;
	h.status = status;
	if (vrpc_packet_encode(&h, fn, payload, &buf, ret_n) < 0)
		return NULL;
	return buf;
}

uint8_t *mock_vrpc_packet(struct mock_vrpc *m, const struct vrpc_header *call,
			  int type, int status, xdrproc_t fn,
			  const void *payload, size_t *ret_n)
{
	uint8_t *buf = packet(call, type, status, fn, payload, ret_n);

	if (!buf)
		mock_vrpc_fail(m, "cannot encode");
	return buf;
}

static void send_packet(struct mock_vrpc *m, uint8_t *buf, size_t n)
{
	if (buf)
		mock_vrpc_send(m, buf, n);
	free(buf);
}

void mock_vrpc_reply(struct mock_vrpc *m, const struct vrpc_header *call,
		     xdrproc_t fn, const void *ret)
{
	size_t n = 0;
	uint8_t *buf = mock_vrpc_packet(m, call, VRPC_REPLY, VRPC_OK, fn, ret,
					&n);

	send_packet(m, buf, n);
}

static uint8_t *error_packet(const struct vrpc_header *call, int type,
			     int code, const char *msg, size_t *ret_n)
{
	vrpc_nonnull_string s = (char *)msg;
	vrpc_error e = { .code = code, .domain = 10, .message = &s,
			 .level = 2, .int1 = -1, .int2 = -1 };

	return packet(call, type, VRPC_ERROR, VRPC_XDR(xdr_vrpc_error), &e,
		      ret_n);
}

void mock_vrpc_reply_error(struct mock_vrpc *m, const struct vrpc_header *call,
			   int code, const char *msg)
{
	size_t n = 0;
	uint8_t *buf = error_packet(call, VRPC_REPLY, code, msg, &n);

	send_packet(m, buf, n);
}

uint8_t *mock_vrpc_lookup_packet(struct mock_vrpc *m,
				 const struct vrpc_header *call,
				 const char *name, size_t *ret_n)
{
	vrpc_domain_lookup_ret r = { .dom = { .name = (char *)name, .id = 7 } };

	memset(r.dom.uuid, 0xab, sizeof(r.dom.uuid));
	return mock_vrpc_packet(m, call, VRPC_REPLY, VRPC_OK,
				VRPC_XDR(xdr_vrpc_domain_lookup_ret), &r, ret_n);
}

void mock_vrpc_lookup_reply(struct mock_vrpc *m, const struct vrpc_header *call,
			    const char *name)
{
	size_t n = 0;
	uint8_t *buf = mock_vrpc_lookup_packet(m, call, name, &n);

	send_packet(m, buf, n);
}

static uint8_t *lifecycle_packet(int callback, const vrpc_nonnull_domain *dom,
				 int event, int detail, size_t *ret_n)
{
	const struct vrpc_header h = {
		.prog = VRPC_PROGRAM_REMOTE, .vers = 1,
		.proc = VRPC_PROC_DOMAIN_EVENT_CALLBACK_LIFECYCLE,
		.type = VRPC_MESSAGE, .serial = 1, .status = VRPC_OK,
	};
	vrpc_domain_event_callback_lifecycle_msg msg = {
		.callbackID = callback, .dom = *dom, .event = event,
		.detail = detail,
	};
	uint8_t *buf = NULL;

	if (vrpc_packet_encode(&h,
		VRPC_XDR(xdr_vrpc_domain_event_callback_lifecycle_msg), &msg,
		&buf, ret_n) < 0)
		return NULL;
	return buf;
}

void mock_vrpc_lifecycle_event(struct mock_vrpc *m, const char *name,
			       int event)
{
	vrpc_nonnull_domain dom = { .name = (char *)name, .id = 7 };
	size_t n = 0;
	uint8_t *buf = lifecycle_packet(3, &dom, event, 0, &n);

	send_packet(m, buf, n);
}

bool mock_vrpc_handshake(struct mock_vrpc *m, bool ping)
{
	struct vrpc_header h;
	int types[] = { VRPC_AUTH_NONE };
	vrpc_auth_list_ret al = { .types = { 1, types } };
	vrpc_connect_supports_feature_args fa = { 0 };
	vrpc_connect_supports_feature_ret fr = { 1 };
	vrpc_connect_open_args oa;

	if (!mock_vrpc_expect(m, VRPC_PROGRAM_REMOTE, VRPC_PROC_AUTH_LIST, &h,
			      NULL, NULL))
		return false;
	mock_vrpc_reply(m, &h, VRPC_XDR(xdr_vrpc_auth_list_ret), &al);
	if (!mock_vrpc_expect(m, VRPC_PROGRAM_REMOTE,
			      VRPC_PROC_CONNECT_SUPPORTS_FEATURE, &h,
			      VRPC_XDR(xdr_vrpc_connect_supports_feature_args),
			      &fa))
		return false;
	if (fa.feature != VRPC_FEATURE_KEEPALIVE)
		mock_vrpc_fail(m, "feature %d asked", fa.feature);
	mock_vrpc_reply(m, &h, VRPC_XDR(xdr_vrpc_connect_supports_feature_ret),
			&fr);
	memset(&oa, 0, sizeof(oa));
	if (!mock_vrpc_expect(m, VRPC_PROGRAM_REMOTE, VRPC_PROC_CONNECT_OPEN,
			      &h, VRPC_XDR(xdr_vrpc_connect_open_args), &oa))
		return false;
	if (!oa.name || strcmp(*oa.name, "qemu:///system"))
		mock_vrpc_fail(m, "CONNECT_OPEN name %s",
			       oa.name ? *oa.name : "-");
	xdr_free(VRPC_XDR(xdr_vrpc_connect_open_args), &oa);
	if (ping) {
		const uint8_t pingpkt[] = {
			0, 0, 0, 28, 0x6b, 0x65, 0x65, 0x70, 0, 0, 0, 1,
			0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0,
		};
		struct vrpc_header p;
		uint8_t *pl = NULL;
		size_t n = 0;

		mock_vrpc_send(m, pingpkt, sizeof(pingpkt));
		if (!mock_vrpc_read(m, &p, &pl, &n) ||
		    p.prog != VRPC_PROGRAM_KEEPALIVE ||
		    p.proc != VRPC_KEEPALIVE_PROC_PONG ||
		    p.type != VRPC_MESSAGE || n != 0)
			mock_vrpc_fail(m, "no PONG");
		free(pl);
	}
	mock_vrpc_reply(m, &h, NULL, NULL);
	return !m->failed;
}

void mock_vrpc_expect_close(struct mock_vrpc *m)
{
	struct vrpc_header h;

	if (mock_vrpc_expect(m, VRPC_PROGRAM_REMOTE, VRPC_PROC_CONNECT_CLOSE,
			     &h, NULL, NULL))
		mock_vrpc_reply(m, &h, NULL, NULL);
}

void mock_vrpc_expect_eof(struct mock_vrpc *m)
{
	struct vrpc_header h;
	uint8_t *pl = NULL;
	size_t n;

	if (mock_vrpc_read(m, &h, &pl, &n)) {
		mock_vrpc_fail(m, "unexpected call %d", h.proc);
		free(pl);
	}
}

bool mock_vrpc_expect_lookup(struct mock_vrpc *m, struct vrpc_header *h,
			     char **name)
{
	vrpc_domain_lookup_by_name_args a = { 0 };
	bool ok = mock_vrpc_expect(m, VRPC_PROGRAM_REMOTE,
		VRPC_PROC_DOMAIN_LOOKUP_BY_NAME, h,
		VRPC_XDR(xdr_vrpc_domain_lookup_by_name_args), &a);

	if (ok && name)
		*name = a.name;
	else
		free(a.name);
	return ok;
}

void mock_vrpc_stream(struct mock_vrpc *m, const struct vrpc_header *call,
		      int status, const void *data, size_t n)
{
	struct vrpc_header h = *call;
	uint8_t *buf = mock_xalloc(VRPC_HEADER_SIZE + n + 1);

	h.type = VRPC_STREAM;
	h.status = status;
	h.len = (uint32_t)(VRPC_HEADER_SIZE + n);
	vrpc_header_encode(&h, buf);
	if (n)
		memcpy(buf + VRPC_HEADER_SIZE, data, n);
	mock_vrpc_send(m, buf, VRPC_HEADER_SIZE + n);
	free(buf);
}

void mock_vrpc_expect_stream(struct mock_vrpc *m,
			     const struct vrpc_header *call, int status)
{
	struct vrpc_header h;
	uint8_t *pl = NULL;
	size_t n = 0;

	if (m->failed)
		return;
	if (!mock_vrpc_read(m, &h, &pl, &n)) {
		mock_vrpc_fail(m, "expected a STREAM packet, got EOF");
		return;
	}
	if (h.type != VRPC_STREAM || h.serial != call->serial ||
	    h.proc != call->proc || h.prog != call->prog ||
	    h.status != status || n != 0)
		mock_vrpc_fail(m, "expected STREAM status %d serial %u, got "
			       "type %d status %d serial %u", status,
			       call->serial, h.type, h.status, h.serial);
	free(pl);
}

static void *script_main(void *arg)
{
	struct mock_vrpc *m = arg;

	if (mock_vrpc_accept(m))
		m->script(m);
	mock_vrpc_hangup(m);
	return NULL;
}

/* A temporary directory for a UNIX socket; aborts if there is none. */
static void make_dir(char *dir, size_t n)
{
	snprintf(dir, n, "/tmp/hvt-mock-XXXXXX");
	if (!mkdtemp(dir))
		abort();
}

void mock_vrpc_start(struct mock_vrpc *m, void (*script)(struct mock_vrpc *m),
		     bool tcp)
{
	memset(m, 0, sizeof(*m));
	m->cfd = -1;
	m->script = script;
	make_dir(m->dir, sizeof(m->dir));
	if (tcp) {
		unsigned port;

		m->lfd = mock_listen_tcp(&port);
		snprintf(m->uri, sizeof(m->uri),
			 "qemu+tcp://127.0.0.1:%u/system", port);
	} else {
		snprintf(m->path, sizeof(m->path), "%s/sock", m->dir);
		m->lfd = mock_listen_unix(m->path);
		snprintf(m->uri, sizeof(m->uri),
			 "qemu+unix:///system?socket=%s", m->path);
	}
	if (pthread_create(&m->thread, NULL, script_main, m))
		abort();
}

void mock_vrpc_unlisten(struct mock_vrpc *m)
{
	if (m->lfd >= 0) {
		close(m->lfd);
		if (m->path[0])
			unlink(m->path);
	}
	m->lfd = -1;
}

void mock_vrpc_finish(struct mock_vrpc *m)
{
	pthread_join(m->thread, NULL);
	mock_vrpc_unlisten(m);
	rmdir(m->dir);
}

/* ---- the small libvirtd ---- */

static const struct procname {
	const char *name;
	uint32_t prog;
	int32_t proc;
} procs[] = {
	{ "connect-open", VRPC_PROGRAM_REMOTE, VRPC_PROC_CONNECT_OPEN },
	{ "connect-close", VRPC_PROGRAM_REMOTE, VRPC_PROC_CONNECT_CLOSE },
	{ "domain-create", VRPC_PROGRAM_REMOTE, VRPC_PROC_DOMAIN_CREATE },
	{ "domain-destroy", VRPC_PROGRAM_REMOTE, VRPC_PROC_DOMAIN_DESTROY },
	{ "domain-get-xml-desc", VRPC_PROGRAM_REMOTE,
	  VRPC_PROC_DOMAIN_GET_XML_DESC },
	{ "domain-lookup-by-name", VRPC_PROGRAM_REMOTE,
	  VRPC_PROC_DOMAIN_LOOKUP_BY_NAME },
	{ "domain-lookup-by-uuid", VRPC_PROGRAM_REMOTE,
	  VRPC_PROC_DOMAIN_LOOKUP_BY_UUID },
	{ "domain-reboot", VRPC_PROGRAM_REMOTE, VRPC_PROC_DOMAIN_REBOOT },
	{ "domain-resume", VRPC_PROGRAM_REMOTE, VRPC_PROC_DOMAIN_RESUME },
	{ "domain-shutdown", VRPC_PROGRAM_REMOTE, VRPC_PROC_DOMAIN_SHUTDOWN },
	{ "domain-suspend", VRPC_PROGRAM_REMOTE, VRPC_PROC_DOMAIN_SUSPEND },
	{ "connect-supports-feature", VRPC_PROGRAM_REMOTE,
	  VRPC_PROC_CONNECT_SUPPORTS_FEATURE },
	{ "auth-list", VRPC_PROGRAM_REMOTE, VRPC_PROC_AUTH_LIST },
	{ "domain-set-memory-flags", VRPC_PROGRAM_REMOTE,
	  VRPC_PROC_DOMAIN_SET_MEMORY_FLAGS },
	{ "domain-screenshot", VRPC_PROGRAM_REMOTE,
	  VRPC_PROC_DOMAIN_SCREENSHOT },
	{ "domain-get-state", VRPC_PROGRAM_REMOTE, VRPC_PROC_DOMAIN_GET_STATE },
	{ "domain-reset", VRPC_PROGRAM_REMOTE, VRPC_PROC_DOMAIN_RESET },
	{ "domain-shutdown-flags", VRPC_PROGRAM_REMOTE,
	  VRPC_PROC_DOMAIN_SHUTDOWN_FLAGS },
	{ "domain-pm-wakeup", VRPC_PROGRAM_REMOTE, VRPC_PROC_DOMAIN_PM_WAKEUP },
	{ "connect-list-all-domains", VRPC_PROGRAM_REMOTE,
	  VRPC_PROC_CONNECT_LIST_ALL_DOMAINS },
	{ "connect-get-all-domain-stats", VRPC_PROGRAM_REMOTE,
	  VRPC_PROC_CONNECT_GET_ALL_DOMAIN_STATS },
	{ "connect-domain-event-callback-register-any", VRPC_PROGRAM_REMOTE,
	  VRPC_PROC_CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY },
	{ "connect-domain-event-callback-deregister-any", VRPC_PROGRAM_REMOTE,
	  VRPC_PROC_CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY },
	{ "qemu-domain-monitor-command", VRPC_PROGRAM_QEMU,
	  VRPC_QEMU_PROC_DOMAIN_MONITOR_COMMAND },
	{ "qemu-connect-domain-monitor-event-register", VRPC_PROGRAM_QEMU,
	  VRPC_QEMU_PROC_CONNECT_DOMAIN_MONITOR_EVENT_REGISTER },
	{ "qemu-connect-domain-monitor-event-deregister", VRPC_PROGRAM_QEMU,
	  VRPC_QEMU_PROC_CONNECT_DOMAIN_MONITOR_EVENT_DEREGISTER },
};

#define NPROCS (sizeof(procs) / sizeof(*procs))

/* A procedure by name: the full name, or without "domain-"/"connect-"
 * (get-state, list-all-domains), or "qemu-" and its short name
 * (qemu-monitor-command); or "PROG/NUMBER", or a REMOTE NUMBER. */
static bool proc_by_name(const char *s, uint32_t *prog, int32_t *proc)
{
	char *end;
	long n = strtol(s, &end, 10);

	if (end != s && !*end) {
		*prog = VRPC_PROGRAM_REMOTE;
		*proc = (int32_t)n;
		return true;
	}
	for (size_t i = 0; i < NPROCS; i++) {
		const char *full = procs[i].name, *shrt = full;
		char q[80];

		if (!strncmp(shrt, "qemu-", 5))
			shrt += 5;
		if (!strncmp(shrt, "domain-", 7))
			shrt += 7;
		else if (!strncmp(shrt, "connect-", 8))
			shrt += 8;
		snprintf(q, sizeof(q), "qemu-%s", shrt);
		if (!strcmp(s, full) ||
		    (procs[i].prog == VRPC_PROGRAM_REMOTE && !strcmp(s, shrt)) ||
		    (procs[i].prog == VRPC_PROGRAM_QEMU && !strcmp(s, q))) {
			*prog = procs[i].prog;
			*proc = procs[i].proc;
			return true;
		}
	}
	return false;
}

static void proc_name(uint32_t prog, int32_t proc, char *out, size_t n)
{
	for (size_t i = 0; i < NPROCS; i++) {
		if (procs[i].prog == prog && procs[i].proc == proc) {
			snprintf(out, n, "%s", procs[i].name);
			return;
		}
	}
	snprintf(out, n, "%x/%d", prog, proc);
}

struct ldom {
	char *name;
	char *xml;
	int state; /* 1 running, 3 paused, 5 shutoff */
	int index;
};

struct fault {
	struct fault *next;
	uint32_t prog;
	int32_t proc;
	char *dom;    /* NULL: any */
	char *action;
};

struct callcount {
	struct callcount *next;
	uint32_t prog;
	int32_t proc;
	int n;
};

struct pending {
	struct pending *next;
	int64_t due;
	uint8_t *buf;
	size_t n;
};

struct lconn {
	struct mock_libvirtd *d;
	int fd;
	pthread_t thread;
	pthread_mutex_t wlock; /* writes: replies, and others' events */
	int callback;          /* lifecycle callback registered, or 0 */
	struct pending *pending;
};

struct mock_libvirtd {
	char dir[64], path[128], uri[256];
	int lfd;
	pthread_mutex_t lock; /* everything below */
	struct ldom *doms;
	size_t ndoms;
	struct fault *faults;
	struct callcount *calls;
	struct lconn **conns;
	size_t nconns;
	int accepted;
	int next_callback;
	bool failed;
	volatile bool stopping;
	FILE *log;
	pthread_t acceptor;
};

static void dlog(struct mock_libvirtd *d, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Called with d->lock held. */
static void dlog(struct mock_libvirtd *d, const char *fmt, ...)
{
	va_list ap;

	if (!d->log)
		return;
	va_start(ap, fmt);
	flockfile(d->log);
	vfprintf(d->log, fmt, ap);
	fputc('\n', d->log);
	fflush(d->log);
	funlockfile(d->log);
	va_end(ap);
}

static struct ldom *dom_by_name(struct mock_libvirtd *d, const char *name)
{
	for (size_t i = 0; i < d->ndoms; i++)
		if (!strcmp(d->doms[i].name, name))
			return &d->doms[i];
	return NULL;
}

/*
 * A domain's uuid: its first byte the low byte of index + 1, then 02 03 ...
 * 10 with the higher bytes of index + 1 XORed into bytes 1 to 3: unique for
 * 2^32 - 1 domains, and the same as ever (N 02 03 ...) for the first 255.
 */
#define UUID_INDEX_BYTES 4

static uint8_t uuid_base(int i)
{
	return i ? (uint8_t)(i + 1) : 0;
}

static void dom_wire(const struct ldom *x, vrpc_nonnull_domain *out)
{
	uint32_t v = (uint32_t)x->index + 1;

	out->name = x->name;
	for (int i = 0; i < VRPC_UUID_BUFLEN; i++)
		out->uuid[i] = (char)(uuid_base(i) ^
			(i < UUID_INDEX_BYTES ? (v >> (8 * i)) & 0xff : 0));
	out->id = x->state == 5 ? -1 : x->index + 1;
}

static struct ldom *dom_by_uuid(struct mock_libvirtd *d, const char *uuid)
{
	uint32_t v = 0;
	vrpc_nonnull_domain w;

	for (int i = 0; i < UUID_INDEX_BYTES; i++)
		v |= (uint32_t)((uint8_t)uuid[i] ^ uuid_base(i)) << (8 * i);
	if (v == 0 || v > d->ndoms)
		return NULL;
	dom_wire(&d->doms[v - 1], &w);
	return memcmp(w.uuid, uuid, VRPC_UUID_BUFLEN) ? NULL : &d->doms[v - 1];
}

static int parse_state(const char *s)
{
	if (!strcmp(s, "running"))
		return 1;
	if (!strcmp(s, "paused"))
		return 3;
	if (!strcmp(s, "shutoff"))
		return 5;
	return -1;
}

void mock_libvirtd_line(struct mock_libvirtd *d, const char *line)
{
	char word[64], name[256];
	int off = 0;

	while (*line == ' ' || *line == '\t')
		line++;
	if (!*line || *line == '#')
		return;
	if (sscanf(line, "%63s %255s %n", word, name, &off) < 2) {
		fprintf(stderr, "mock-libvirtd: bad line: %s\n", line);
		abort();
	}
	pthread_mutex_lock(&d->lock);
	if (!strcmp(word, "domain")) {
		struct ldom *x = dom_by_name(d, name);

		if (!x) {
			d->doms = realloc(d->doms, (d->ndoms + 1) * sizeof(*x));
			x = &d->doms[d->ndoms];
			memset(x, 0, sizeof(*x));
			x->name = mock_xstrdup(name);
			x->index = (int)d->ndoms++;
		}
		x->state = parse_state(line + off);
		if (x->state < 0) {
			fprintf(stderr, "mock-libvirtd: bad state: %s\n", line);
			abort();
		}
	} else if (!strcmp(word, "xml") && dom_by_name(d, name)) {
		struct ldom *x = dom_by_name(d, name);

		free(x->xml);
		x->xml = mock_xstrdup(line + off);
	} else if (!strcmp(word, "fault")) {
		struct fault *f = mock_xalloc(sizeof(*f));
		char *at = strchr(name, '@');

		if (at) {
			*at = 0;
			f->dom = mock_xstrdup(at + 1);
		}
		if (!proc_by_name(name, &f->prog, &f->proc)) {
			fprintf(stderr, "mock-libvirtd: no procedure %s\n",
				name);
			abort();
		}
		f->action = mock_xstrdup(line + off);
		f->next = d->faults;
		d->faults = f;
	} else {
		fprintf(stderr, "mock-libvirtd: bad line: %s\n", line);
		abort();
	}
	pthread_mutex_unlock(&d->lock);
}

static void conn_send(struct lconn *c, const uint8_t *buf, size_t n)
{
	pthread_mutex_lock(&c->wlock);
	if (c->fd >= 0)
		mock_send_all(c->fd, buf, n);
	pthread_mutex_unlock(&c->wlock);
}

/* Sends a lifecycle event to every registered connection. d->lock held. */
static void broadcast(struct mock_libvirtd *d, const struct ldom *x,
		      int event, int detail)
{
	vrpc_nonnull_domain w;

	dom_wire(x, &w);
	for (size_t i = 0; i < d->nconns; i++) {
		struct lconn *c = d->conns[i];
		uint8_t *buf;
		size_t n = 0;

		if (!c->callback)
			continue;
		buf = lifecycle_packet(c->callback, &w, event, detail, &n);
		if (buf)
			conn_send(c, buf, n);
		free(buf);
	}
}

#define ERR_NO_SUPPORT 3
#define ERR_NO_DOMAIN 42
#define ERR_OPERATION_INVALID 55

struct answer {
	int code;        /* 0, or the error's */
	char msg[512];
	xdrproc_t fn;
	union {
		vrpc_auth_list_ret auth;
		vrpc_connect_supports_feature_ret feature;
		vrpc_connect_list_all_domains_ret list;
		vrpc_domain_lookup_ret lookup;
		vrpc_domain_get_state_ret state;
		vrpc_domain_get_xml_desc_ret xml;
		vrpc_connect_domain_event_callback_register_any_ret reg;
		vrpc_qemu_domain_monitor_command_ret mon;
		vrpc_connect_get_all_domain_stats_ret stats;
	} u;
	/* the lists' arrays, one slot per domain; freed with the answer */
	vrpc_nonnull_domain *list;
	vrpc_domain_stats_record *recs;
	vrpc_typed_param (*params)[2];
	int auth_none;
	char xml[1024];
	char mon[512];
	/* an event to send after the reply */
	const struct ldom *ev_dom;
	int ev, ev_detail;
};

static void set_error(struct answer *a, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_error(struct answer *a, int code, const char *fmt, ...)
{
	va_list ap;

	a->code = code;
	va_start(ap, fmt);
	vsnprintf(a->msg, sizeof(a->msg), fmt, ap);
	va_end(ap);
}

static bool wants(unsigned flags, const struct ldom *x)
{
	bool active = x->state != 5;

	if (!flags)
		return true;
	return ((flags & VRPC_LIST_DOMAINS_RUNNING) && x->state == 1) ||
	       ((flags & VRPC_LIST_DOMAINS_PAUSED) && x->state == 3) ||
	       ((flags & VRPC_LIST_DOMAINS_SHUTOFF) && x->state == 5) ||
	       ((flags & VRPC_LIST_DOMAINS_ACTIVE) && active) ||
	       ((flags & VRPC_LIST_DOMAINS_INACTIVE) && !active);
}

/* A state change by a control verb: from one of the states in `from` (a
 * string of state digits) to `to`, with event (ev, detail). */
static void transition(struct answer *a, struct ldom *x, const char *from,
		       int to, int ev, int detail, const char *why)
{
	if (!strchr(from, '0' + x->state)) {
		set_error(a, ERR_OPERATION_INVALID,
			  "Requested operation is not valid: %s", why);
		return;
	}
	if (to && to != x->state) {
		x->state = to;
		a->ev_dom = x;
		a->ev = ev;
		a->ev_detail = detail;
	}
}

/* The domain procedures' args start with the domain. */
static bool domain_proc(uint32_t prog, int32_t proc)
{
	if (prog == VRPC_PROGRAM_QEMU)
		return proc == VRPC_QEMU_PROC_DOMAIN_MONITOR_COMMAND;
	switch (proc) {
	case VRPC_PROC_DOMAIN_CREATE: case VRPC_PROC_DOMAIN_DESTROY:
	case VRPC_PROC_DOMAIN_GET_XML_DESC: case VRPC_PROC_DOMAIN_REBOOT:
	case VRPC_PROC_DOMAIN_RESUME: case VRPC_PROC_DOMAIN_SHUTDOWN:
	case VRPC_PROC_DOMAIN_SUSPEND: case VRPC_PROC_DOMAIN_SET_MEMORY_FLAGS:
	case VRPC_PROC_DOMAIN_SCREENSHOT: case VRPC_PROC_DOMAIN_GET_STATE:
	case VRPC_PROC_DOMAIN_RESET: case VRPC_PROC_DOMAIN_SHUTDOWN_FLAGS:
	case VRPC_PROC_DOMAIN_PM_WAKEUP:
		return true;
	}
	return false;
}

/* What libvirtd answers to call h. d->lock held. */
static void answer(struct lconn *c, const struct vrpc_header *h,
		   const uint8_t *pl, size_t n, vrpc_nonnull_domain *dom,
		   struct answer *a)
{
	struct mock_libvirtd *d = c->d;
	struct ldom *x = NULL;

	if (domain_proc(h->prog, h->proc)) {
		x = dom_by_uuid(d, dom->uuid);
		if (!x) {
			set_error(a, ERR_NO_DOMAIN, "Domain not found: no "
				  "domain with matching uuid");
			return;
		}
	}
	if (h->prog == VRPC_PROGRAM_QEMU) {
		vrpc_qemu_domain_monitor_command_args m = { 0 };

		switch (h->proc) {
		case VRPC_QEMU_PROC_CONNECT_DOMAIN_MONITOR_EVENT_REGISTER:
			a->u.reg.callbackID = ++d->next_callback;
			a->fn = VRPC_XDR(xdr_vrpc_qemu_connect_domain_monitor_event_register_ret);
			return;
		case VRPC_QEMU_PROC_CONNECT_DOMAIN_MONITOR_EVENT_DEREGISTER:
			return;
		case VRPC_QEMU_PROC_DOMAIN_MONITOR_COMMAND:
			if (x->state == 5) {
				set_error(a, ERR_OPERATION_INVALID,
					  "Requested operation is not valid: "
					  "domain is not running");
				return;
			}
			vrpc_payload_decode(pl, n, VRPC_XDR(
				xdr_vrpc_qemu_domain_monitor_command_args), &m);
			if (m.cmd && strstr(m.cmd, "\"query-version\""))
				snprintf(a->mon, sizeof(a->mon), "{\"return\": "
					 "{\"qemu\": {\"major\": 7, \"minor\": "
					 "2, \"micro\": 0}, \"package\": \"\"}, "
					 "\"id\": \"libvirt-1\"}");
			else
				snprintf(a->mon, sizeof(a->mon), "{\"return\": "
					 "{}, \"id\": \"libvirt-1\"}");
			xdr_free(VRPC_XDR(
				xdr_vrpc_qemu_domain_monitor_command_args),
				 (char *)&m);
			a->u.mon.result = a->mon;
			a->fn = VRPC_XDR(xdr_vrpc_qemu_domain_monitor_command_ret);
			return;
		}
		set_error(a, ERR_NO_SUPPORT, "unknown procedure %d", h->proc);
		return;
	}
	switch (h->proc) {
	case VRPC_PROC_AUTH_LIST:
		a->auth_none = VRPC_AUTH_NONE;
		a->u.auth.types.types_len = 1;
		a->u.auth.types.types_val = &a->auth_none;
		a->fn = VRPC_XDR(xdr_vrpc_auth_list_ret);
		return;
	case VRPC_PROC_CONNECT_SUPPORTS_FEATURE:
		a->u.feature.supported = 1;
		a->fn = VRPC_XDR(xdr_vrpc_connect_supports_feature_ret);
		return;
	case VRPC_PROC_CONNECT_OPEN:
	case VRPC_PROC_CONNECT_CLOSE:
		return;
	case VRPC_PROC_CONNECT_DOMAIN_EVENT_CALLBACK_REGISTER_ANY:
		c->callback = a->u.reg.callbackID = ++d->next_callback;
		a->fn = VRPC_XDR(xdr_vrpc_connect_domain_event_callback_register_any_ret);
		return;
	case VRPC_PROC_CONNECT_DOMAIN_EVENT_CALLBACK_DEREGISTER_ANY:
		c->callback = 0;
		return;
	case VRPC_PROC_CONNECT_LIST_ALL_DOMAINS: {
		vrpc_connect_list_all_domains_args la = { 0 };
		unsigned k = 0;

		vrpc_payload_decode(pl, n,
			VRPC_XDR(xdr_vrpc_connect_list_all_domains_args), &la);
		a->list = mock_xalloc((d->ndoms + 1) * sizeof(*a->list));
		for (size_t i = 0; i < d->ndoms; i++)
			if (wants(la.flags, &d->doms[i]))
				dom_wire(&d->doms[i], &a->list[k++]);
		a->u.list.domains.domains_len = k;
		a->u.list.domains.domains_val = a->list;
		a->u.list.ret = k;
		a->fn = VRPC_XDR(xdr_vrpc_connect_list_all_domains_ret);
		return;
	}
	case VRPC_PROC_CONNECT_GET_ALL_DOMAIN_STATS: {
		/* Every domain's state: "state.state", "state.reason". */
		unsigned k = 0;

		a->recs = mock_xalloc((d->ndoms + 1) * sizeof(*a->recs));
		a->params = mock_xalloc((d->ndoms + 1) * sizeof(*a->params));
		for (size_t i = 0; i < d->ndoms; i++, k++) {
			vrpc_typed_param *p = a->params[k];

			dom_wire(&d->doms[i], &a->recs[k].dom);
			p[0].field = "state.state";
			p[0].value.type = VRPC_TYPED_PARAM_INT;
			p[0].value.vrpc_typed_param_value_u.i = d->doms[i].state;
			p[1].field = "state.reason";
			p[1].value.type = VRPC_TYPED_PARAM_INT;
			p[1].value.vrpc_typed_param_value_u.i = 1;
			a->recs[k].params.params_len = 2;
			a->recs[k].params.params_val = p;
		}
		a->u.stats.retStats.retStats_len = k;
		a->u.stats.retStats.retStats_val = a->recs;
		a->fn = VRPC_XDR(xdr_vrpc_connect_get_all_domain_stats_ret);
		return;
	}
	case VRPC_PROC_DOMAIN_LOOKUP_BY_NAME:
		x = dom->name ? dom_by_name(d, dom->name) : NULL;
		/* fall through */
	case VRPC_PROC_DOMAIN_LOOKUP_BY_UUID:
		if (h->proc == VRPC_PROC_DOMAIN_LOOKUP_BY_UUID)
			x = dom_by_uuid(d, dom->uuid);
		if (!x) {
			set_error(a, ERR_NO_DOMAIN, "Domain not found: no "
				  "domain with matching name '%s'",
				  dom->name ? dom->name : "");
			return;
		}
		dom_wire(x, &a->u.lookup.dom);
		a->fn = VRPC_XDR(xdr_vrpc_domain_lookup_ret);
		return;
	case VRPC_PROC_DOMAIN_GET_STATE:
		a->u.state.state = x->state;
		a->u.state.reason = 1;
		a->fn = VRPC_XDR(xdr_vrpc_domain_get_state_ret);
		return;
	case VRPC_PROC_DOMAIN_GET_XML_DESC:
		if (x->xml)
			snprintf(a->xml, sizeof(a->xml), "%s", x->xml);
		else
			snprintf(a->xml, sizeof(a->xml), "<domain type='kvm'>"
				 "\n  <name>%s</name>\n</domain>\n", x->name);
		a->u.xml.xml = a->xml;
		a->fn = VRPC_XDR(xdr_vrpc_domain_get_xml_desc_ret);
		return;
	case VRPC_PROC_DOMAIN_CREATE:
		transition(a, x, "5", 1, 2, 0, "domain is already running");
		return;
	case VRPC_PROC_DOMAIN_DESTROY:
		transition(a, x, "13", 5, 5, 2, "domain is not running");
		return;
	case VRPC_PROC_DOMAIN_SUSPEND:
		transition(a, x, "13", 3, 3, 0, "domain is not running");
		return;
	case VRPC_PROC_DOMAIN_RESUME:
		transition(a, x, "3", 1, 4, 0, "domain is not paused");
		return;
	case VRPC_PROC_DOMAIN_SHUTDOWN:
	case VRPC_PROC_DOMAIN_SHUTDOWN_FLAGS:
		transition(a, x, "1", 5, 5, 0, "domain is not running");
		return;
	case VRPC_PROC_DOMAIN_REBOOT:
	case VRPC_PROC_DOMAIN_RESET:
	case VRPC_PROC_DOMAIN_SET_MEMORY_FLAGS:
		transition(a, x, "13", 0, 0, 0, "domain is not running");
		return;
	case VRPC_PROC_DOMAIN_PM_WAKEUP:
		set_error(a, ERR_OPERATION_INVALID, "Requested operation is "
			  "not valid: domain is not suspended");
		return;
	}
	set_error(a, ERR_NO_SUPPORT, "this function is not supported by the "
		  "connection driver: procedure %d", h->proc);
	d->failed = true;
	fprintf(stderr, "mock-libvirtd: unexpected call %d\n", h->proc);
}

static void queue(struct lconn *c, int64_t due, uint8_t *buf, size_t n)
{
	struct pending *p = mock_xalloc(sizeof(*p)), **at = &c->pending;

	p->due = due;
	p->buf = buf;
	p->n = n;
	while (*at && (*at)->due <= due)
		at = &(*at)->next;
	p->next = *at;
	*at = p;
}

static void count_call(struct mock_libvirtd *d, uint32_t prog, int32_t proc)
{
	struct callcount *k;

	for (k = d->calls; k && (k->prog != prog || k->proc != proc);
	     k = k->next)
		;
	if (!k) {
		k = mock_xalloc(sizeof(*k));
		k->prog = prog;
		k->proc = proc;
		k->next = d->calls;
		d->calls = k;
	}
	k->n++;
}

/* One call. False: hang up. */
static bool handle(struct lconn *c, const struct vrpc_header *h,
		   const uint8_t *pl, size_t n)
{
	struct mock_libvirtd *d = c->d;
	vrpc_nonnull_domain dom;
	vrpc_domain_lookup_by_name_args ln = { 0 };
	struct answer *a = mock_xalloc(sizeof(*a));
	const struct fault *f = NULL;
	uint8_t *buf = NULL;
	size_t len = 0;
	char pname[80];
	bool keep = true;

	memset(&dom, 0, sizeof(dom));
	if (h->prog == VRPC_PROGRAM_KEEPALIVE) {
		if (h->proc == VRPC_KEEPALIVE_PROC_PING) {
			struct vrpc_header p = *h;

			p.proc = VRPC_KEEPALIVE_PROC_PONG;
			buf = packet(&p, VRPC_MESSAGE, VRPC_OK, NULL, NULL, &len);
			if (buf)
				conn_send(c, buf, len);
			free(buf);
		}
		free(a);
		return true;
	}
	if (h->type != VRPC_CALL) {
		free(a);
		return true;
	}
	if (domain_proc(h->prog, h->proc))
		vrpc_payload_decode(pl, n, VRPC_XDR(xdr_vrpc_nonnull_domain),
				    &dom);
	else if (h->prog == VRPC_PROGRAM_REMOTE &&
		 h->proc == VRPC_PROC_DOMAIN_LOOKUP_BY_NAME &&
		 vrpc_payload_decode(pl, n, VRPC_XDR(
			xdr_vrpc_domain_lookup_by_name_args), &ln) == 0)
		dom.name = mock_xstrdup(ln.name);
	else if (h->prog == VRPC_PROGRAM_REMOTE &&
		 h->proc == VRPC_PROC_DOMAIN_LOOKUP_BY_UUID && n >= 16)
		memcpy(dom.uuid, pl, VRPC_UUID_BUFLEN);
	xdr_free(VRPC_XDR(xdr_vrpc_domain_lookup_by_name_args), (char *)&ln);

	pthread_mutex_lock(&d->lock);
	count_call(d, h->prog, h->proc);
	if (!dom.name && dom_by_uuid(d, dom.uuid))
		dom.name = mock_xstrdup(dom_by_uuid(d, dom.uuid)->name);
	for (f = d->faults; f; f = f->next)
		if (f->prog == h->prog && f->proc == h->proc &&
		    (!f->dom || (dom.name && !strcmp(f->dom, dom.name))))
			break;
	proc_name(h->prog, h->proc, pname, sizeof(pname));
	if (f)
		dlog(d, "fault %s", pname);
	if (!f || strncmp(f->action, "error ", 6))
		answer(c, h, pl, n, &dom, a);
	if (f && !strncmp(f->action, "error ", 6)) {
		char *end;

		a->code = (int)strtol(f->action + 6, &end, 10);
		snprintf(a->msg, sizeof(a->msg), "%s", *end ? end + 1 : "");
	}
	if (a->code)
		buf = error_packet(h, VRPC_REPLY, a->code, a->msg, &len);
	else
		buf = packet(h, VRPC_REPLY, VRPC_OK, a->fn, &a->u, &len);
	if (f && !strncmp(f->action, "raw ", 4)) {
		size_t rn;
		char *raw = mock_unescape(f->action + 4, &rn);
		struct vrpc_header rh = *h;

		free(buf);
		len = VRPC_HEADER_SIZE + rn;
		buf = mock_xalloc(len);
		rh.type = VRPC_REPLY;
		rh.status = VRPC_OK;
		rh.len = (uint32_t)len;
		vrpc_header_encode(&rh, buf);
		memcpy(buf + VRPC_HEADER_SIZE, raw, rn);
		free(raw);
	} else if (f && !strncmp(f->action, "len ", 4) && buf) {
		uint32_t lie = (uint32_t)strtoul(f->action + 4, NULL, 0);

		buf[0] = (uint8_t)(lie >> 24);
		buf[1] = (uint8_t)(lie >> 16);
		buf[2] = (uint8_t)(lie >> 8);
		buf[3] = (uint8_t)lie;
	}
	if (a->ev_dom && (!f || strcmp(f->action, "stall")))
		broadcast(d, a->ev_dom, a->ev, a->ev_detail);
	if (f && !strcmp(f->action, "stall")) {
		free(buf);
	} else if (f && !strcmp(f->action, "hangup")) {
		free(buf);
		keep = false;
	} else if (f && !strncmp(f->action, "late ", 5)) {
		queue(c, mock_now_ms() + atoi(f->action + 5), buf, len);
	} else if (buf) {
		conn_send(c, buf, len);
		free(buf);
	}
	pthread_mutex_unlock(&d->lock);
	free(dom.name);
	free(a->list);
	free(a->recs);
	free(a->params);
	free(a);
	return keep;
}

static void *conn_main(void *arg)
{
	struct lconn *c = arg;
	struct mock_libvirtd *d = c->d;

	while (!d->stopping && c->fd >= 0) {
		int wait = SLICE_MS;
		struct vrpc_header h;
		uint8_t *pl = NULL;
		size_t n = 0;

		while (c->pending && c->pending->due <= mock_now_ms()) {
			struct pending *p = c->pending;

			c->pending = p->next;
			conn_send(c, p->buf, p->n);
			free(p->buf);
			free(p);
		}
		if (c->pending && c->pending->due - mock_now_ms() < wait)
			wait = (int)(c->pending->due - mock_now_ms());
		if (!mock_readable(c->fd, wait < 0 ? 0 : wait))
			continue;
		if (!read_packet(c->fd, IO_MS, &h, &pl, &n) ||
		    !handle(c, &h, pl, n)) {
			free(pl);
			break;
		}
		free(pl);
	}
	pthread_mutex_lock(&c->wlock);
	if (c->fd >= 0)
		shutdown(c->fd, SHUT_RDWR);
	pthread_mutex_unlock(&c->wlock);
	while (c->pending) {
		struct pending *p = c->pending;

		c->pending = p->next;
		free(p->buf);
		free(p);
	}
	return NULL;
}

static void *lacceptor_main(void *arg)
{
	struct mock_libvirtd *d = arg;

	while (!d->stopping) {
		int fd = mock_accept(d->lfd, SLICE_MS);
		struct lconn *c;

		if (fd < 0)
			continue;
		c = mock_xalloc(sizeof(*c));
		c->d = d;
		c->fd = fd;
		pthread_mutex_init(&c->wlock, NULL);
		pthread_mutex_lock(&d->lock);
		d->conns = realloc(d->conns, (d->nconns + 1) * sizeof(c));
		d->conns[d->nconns++] = c;
		d->accepted++;
		dlog(d, "accepted %d", d->accepted);
		pthread_mutex_unlock(&d->lock);
		if (pthread_create(&c->thread, NULL, conn_main, c))
			abort();
	}
	return NULL;
}

struct mock_libvirtd *mock_libvirtd_start(const char *path, bool tcp,
					  const char *script, FILE *log)
{
	struct mock_libvirtd *d = mock_xalloc(sizeof(*d));
	char *copy = mock_xstrdup(script), *save = NULL;

	pthread_mutex_init(&d->lock, NULL);
	d->log = log;
	for (char *line = strtok_r(copy, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save))
		mock_libvirtd_line(d, line);
	free(copy);
	if (tcp) {
		unsigned port;

		d->lfd = mock_listen_tcp(&port);
		snprintf(d->uri, sizeof(d->uri),
			 "qemu+tcp://127.0.0.1:%u/system", port);
	} else {
		if (path) {
			snprintf(d->path, sizeof(d->path), "%s", path);
		} else {
			make_dir(d->dir, sizeof(d->dir));
			snprintf(d->path, sizeof(d->path), "%s/sock", d->dir);
		}
		d->lfd = mock_listen_unix(d->path);
		snprintf(d->uri, sizeof(d->uri),
			 "qemu+unix:///system?socket=%s", d->path);
	}
	if (pthread_create(&d->acceptor, NULL, lacceptor_main, d))
		abort();
	return d;
}

const char *mock_libvirtd_uri(struct mock_libvirtd *d)
{
	return d->uri;
}

void mock_libvirtd_event(struct mock_libvirtd *d, const char *name, int event,
			 int detail)
{
	pthread_mutex_lock(&d->lock);
	if (dom_by_name(d, name))
		broadcast(d, dom_by_name(d, name), event, detail);
	pthread_mutex_unlock(&d->lock);
}

int mock_libvirtd_state(struct mock_libvirtd *d, const char *name)
{
	int s;

	pthread_mutex_lock(&d->lock);
	s = dom_by_name(d, name) ? dom_by_name(d, name)->state : -1;
	pthread_mutex_unlock(&d->lock);
	return s;
}

void mock_libvirtd_drop(struct mock_libvirtd *d)
{
	pthread_mutex_lock(&d->lock);
	for (size_t i = 0; i < d->nconns; i++) {
		pthread_mutex_lock(&d->conns[i]->wlock);
		if (d->conns[i]->fd >= 0)
			shutdown(d->conns[i]->fd, SHUT_RDWR);
		pthread_mutex_unlock(&d->conns[i]->wlock);
	}
	pthread_mutex_unlock(&d->lock);
}

int mock_libvirtd_accepted(struct mock_libvirtd *d)
{
	int n;

	pthread_mutex_lock(&d->lock);
	n = d->accepted;
	pthread_mutex_unlock(&d->lock);
	return n;
}

int mock_libvirtd_calls(struct mock_libvirtd *d, const char *proc)
{
	uint32_t prog;
	int32_t p;
	int n = 0;

	if (!proc_by_name(proc, &prog, &p))
		return -1;
	pthread_mutex_lock(&d->lock);
	for (struct callcount *k = d->calls; k; k = k->next)
		if (k->prog == prog && k->proc == p)
			n = k->n;
	pthread_mutex_unlock(&d->lock);
	return n;
}

bool mock_libvirtd_finish(struct mock_libvirtd *d)
{
	bool ok;

	d->stopping = true;
	pthread_join(d->acceptor, NULL);
	mock_libvirtd_drop(d);
	for (size_t i = 0; i < d->nconns; i++) {
		pthread_join(d->conns[i]->thread, NULL);
		close(d->conns[i]->fd);
		pthread_mutex_destroy(&d->conns[i]->wlock);
		free(d->conns[i]);
	}
	close(d->lfd);
	if (d->path[0])
		unlink(d->path);
	if (d->dir[0])
		rmdir(d->dir);
	ok = !d->failed;
	for (size_t i = 0; i < d->ndoms; i++) {
		free(d->doms[i].name);
		free(d->doms[i].xml);
	}
	while (d->faults) {
		struct fault *f = d->faults;

		d->faults = f->next;
		free(f->dom);
		free(f->action);
		free(f);
	}
	while (d->calls) {
		struct callcount *k = d->calls;

		d->calls = k->next;
		free(k);
	}
	free(d->doms);
	free(d->conns);
	free(d);
	return ok;
}
