/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The guest agent client (see qga.h). The socket is non-blocking; every
 * wait is a poll() bounded by the call's deadline. `lock` is held across a
 * whole exchange (sync, command, reply), so that commands never interleave
 * and a reply always meets its command.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "hv.h"
#include "qga.h"
#include "sock.h"

#define READ_CHUNK (64u << 10)

struct qga {
	char *path;
	pthread_mutex_t lock;
	int fd;              /* -1 when not connected */
	bool synced;         /* the stream is in step */
	bool unresponsive;   /* a deadline passed; nothing heard since */
	int64_t tried_ms;    /* when the last attempt while unresponsive began */
	bool life;           /* qga_sign_of_life() since (atomic) */
};

struct qga *qga_new(const char *path)
{
	struct qga *q = calloc(1, sizeof(*q));

	if (!q || !(q->path = strdup(path))) {
		free(q);
		return NULL;
	}
	pthread_mutex_init(&q->lock, NULL);
	q->fd = -1;
	return q;
}

static void drop(struct qga *q)
{
	if (q->fd >= 0)
		close(q->fd);
	q->fd = -1;
	q->synced = false;
}

void qga_free(struct qga *q)
{
	if (!q)
		return;
	drop(q);
	pthread_mutex_destroy(&q->lock);
	free(q->path);
	free(q);
}

const char *qga_path(const struct qga *q)
{
	return q->path;
}

void qga_sign_of_life(struct qga *q)
{
	__atomic_store_n(&q->life, true, __ATOMIC_RELEASE);
}

/* ---- the sync reader (no I/O) ---- */

void qga_sync_init(struct qga_sync *s, int64_t id)
{
	memset(s, 0, sizeof(*s));
	qmpc_decoder_init(&s->dec);
	s->id = id;
}

void qga_sync_release(struct qga_sync *s)
{
	qmpc_decoder_release(&s->dec);
}

int qga_sync_feed(struct qga_sync *s, const char *buf, size_t len,
		  size_t *consumed)
{
	size_t used = 0;

	while (used < len) {
		const char *p = buf + used;
		const char *nl = memchr(p, '\n', len - used);
		/* This line's bytes: a 0xFF after its end comes later. */
		size_t span = nl ? (size_t)(nl - p) + 1 : len - used;
		const char *ff = memchr(p, 0xff, span);
		struct qmpc_msg m;
		size_t n;
		int r;

		if (ff) {
			/* Whatever came before the delimiter is stale. */
			used = (size_t)(ff - buf) + 1;
			qmpc_decoder_release(&s->dec);
			qmpc_decoder_init(&s->dec);
			s->delimited = true;
			continue;
		}
		if (!s->delimited) {
			used += span;
			continue;
		}
		r = qmpc_decoder_feed(&s->dec, p, len - used, &n, &m);
		used += n;
		if (r == -ENOMEM) {
			*consumed = used;
			return r;
		}
		if (r == -EPROTO && s->dec.failed) {
			*consumed = used;
			return -EFBIG;
		}
		if (r == 1) {
			char want[24];

			snprintf(want, sizeof(want), "%lld", (long long)s->id);
			r = m.kind == QMP_MSG_RETURN && m.json &&
			    strcmp(m.json, want) == 0;
			qmpc_msg_release(&m);
			if (r) {
				*consumed = used;
				return 1;
			}
		}
	}
	*consumed = used;
	return 0;
}

/* ---- I/O ---- */

/* Waits for `events` on fd until deadline (ms, monotonic): 0, -ETIMEDOUT. */
static int wait_fd(int fd, short events, int64_t deadline)
{
	for (;;) {
		struct pollfd p = { .fd = fd, .events = events };
		int64_t left = deadline - sock_now_ms();
		int r;

		if (left <= 0)
			return -ETIMEDOUT;
		r = poll(&p, 1, left > 1000000 ? 1000000 : (int)left);
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return -errno;
	}
}

static int do_connect(struct qga *q, int64_t deadline, char **ret_error)
{
	int64_t left = deadline - sock_now_ms();
	struct timespec dl = sock_deadline(left < 1 ? 1 : (int)left);
	char *why = NULL;
	int fd = sock_connect_unix(q->path, &dl, &why);

	if (fd == -ENOENT || fd == -ECONNREFUSED || fd == -ENOTSOCK)
		fd = hv_error(ret_error, -ENODATA, "%s: no guest agent socket "
			      "(%s)", q->path, strerror(-fd));
	else if (fd < 0)
		fd = hv_error(ret_error, fd, "%s: %s", q->path,
			      why ? why : strerror(-fd));
	free(why);
	if (fd < 0)
		return fd;
	q->fd = fd;
	q->synced = false;
	return 0;
}

static int send_all(struct qga *q, const char *buf, size_t len,
		    int64_t deadline)
{
	int64_t left = deadline - sock_now_ms();
	struct timespec dl = sock_deadline(left < 0 ? 0 : (int)left);

	return sock_write_all(q->fd, buf, len, &dl, NULL);
}

/* One read within the deadline: bytes, or -ETIMEDOUT, -ECONNRESET (EOF). */
static ssize_t recv_some(struct qga *q, char *buf, size_t size,
			 int64_t deadline)
{
	for (;;) {
		ssize_t n = recv(q->fd, buf, size, 0);
		int r;

		if (n > 0)
			return n;
		if (n == 0)
			return -ECONNRESET;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return -errno;
		r = wait_fd(q->fd, POLLIN, deadline);
		if (r < 0)
			return r;
	}
}

/* Sends 0xFF and guest-sync-delimited, reads until its reply. */
static int resync(struct qga *q, char *buf, int64_t deadline)
{
	struct qga_sync s;
	char cmd[96];
	uint32_t id;
	int r;

	if (getrandom(&id, sizeof(id), GRND_NONBLOCK) != sizeof(id))
		id = (uint32_t)sock_now_ms() ^ (uint32_t)getpid();
	id &= 0x7fffffff; /* the agent takes an int */
	snprintf(cmd, sizeof(cmd), "\xff{\"execute\":\"guest-sync-delimited\","
		 "\"arguments\":{\"id\":%u}}\n", id);
	r = send_all(q, cmd, strlen(cmd), deadline);
	if (r < 0)
		return r;
	qga_sync_init(&s, id);
	for (r = 0; r == 0;) {
		ssize_t n = recv_some(q, buf, READ_CHUNK, deadline);
		size_t used;

		if (n < 0) {
			r = (int)n;
			break;
		}
		r = qga_sync_feed(&s, buf, (size_t)n, &used);
		if (r == 1 && used < (size_t)n)
			r = -EPROTO; /* nothing may follow the sync reply */
	}
	qga_sync_release(&s);
	if (r == 1) {
		q->synced = true;
		r = 0;
	}
	return r;
}

/* Reads one reply line within the deadline, decoded into *m. */
static int read_reply(struct qga *q, char *buf, int64_t deadline,
		      struct qmpc_msg *m, const char **why)
{
	struct qmpc_decoder d;
	int r = 0;

	qmpc_decoder_init(&d);
	while (r == 0) {
		ssize_t n = recv_some(q, buf, READ_CHUNK, deadline);
		size_t used;

		if (n < 0) {
			r = (int)n;
			break;
		}
		for (size_t off = 0; r == 0 && off < (size_t)n; off += used) {
			r = qmpc_decoder_feed(&d, buf + off, (size_t)n - off,
					      &used, m);
			if (r == -EPROTO) {
				*why = d.why;
				r = d.failed ? -EFBIG : -EPROTO;
			} else if (r == 1 && (off + used < (size_t)n ||
					      m->kind == QMP_MSG_GREETING ||
					      m->kind == QMP_MSG_EVENT)) {
				/* More than one reply, or no reply at all. */
				*why = "not one agent reply";
				qmpc_msg_release(m);
				r = -EPROTO;
			}
		}
	}
	qmpc_decoder_release(&d);
	return r;
}

/* The reply object's text from a decoded message. */
static int reply_text(const struct qmpc_msg *m, char **ret)
{
	int n;

	if (m->kind == QMP_MSG_RETURN)
		n = asprintf(ret, "{\"return\":%s}", m->json);
	else
		n = asprintf(ret, "{\"error\":%s}", m->json);
	return n < 0 ? -ENOMEM : 0;
}

/*
 * Before an exchange, q->lock held: -ETIMEDOUT at once while the agent is
 * known unresponsive and showed no life; else makes sure of a connection.
 */
static int enter(struct qga *q, int64_t deadline, char **ret_error)
{
	bool life = __atomic_exchange_n(&q->life, false, __ATOMIC_ACQ_REL);

	if (q->unresponsive && q->fd >= 0 && !life) {
		struct pollfd p = { .fd = q->fd, .events = POLLIN };

		/* A byte that came since (a late reply) is a sign of life. */
		if (poll(&p, 1, 0) > 0)
			life = true;
	}
	if (q->unresponsive && !life && sock_now_ms() - q->tried_ms < QGA_RETRY_MS)
		return hv_error(ret_error, -ETIMEDOUT, "%s: the guest agent is "
				"not responding (a command got no reply in "
				"time, and nothing came since)", q->path);
	if (q->unresponsive) {
		q->tried_ms = sock_now_ms();
		q->synced = false;
	}
	if (q->fd >= 0) {
		struct pollfd p = { .fd = q->fd, .events = POLLRDHUP };

		/* The peer closed since (a QEMU that restarted): a new one. */
		if (poll(&p, 1, 0) > 0 &&
		    (p.revents & (POLLRDHUP | POLLHUP | POLLERR)))
			drop(q);
	}
	if (q->fd < 0)
		return do_connect(q, deadline, ret_error);
	return 0;
}

/* After an exchange, q->lock held: bookkeeping of the outcome. */
static int leave(struct qga *q, int r, const char *what, char **ret_error)
{
	if (r == -ETIMEDOUT) {
		if (!q->unresponsive)
			q->tried_ms = sock_now_ms();
		q->unresponsive = true;
		q->synced = false;
		return hv_error(ret_error, r, "%s: the guest agent did not "
				"answer %s in time", q->path, what);
	}
	if (r < 0 && r != -ENOMEM) {
		/* The stream may be anywhere: start over on a new one. */
		drop(q);
		if (r == -ECONNRESET || r == -EPIPE)
			return hv_error(ret_error, -ENODATA, "%s: the agent "
					"socket closed", q->path);
		return r;
	}
	q->unresponsive = false;
	return r;
}

static int lock_within(struct qga *q, int64_t deadline, char **ret_error)
{
	int64_t left = deadline - sock_now_ms();
	struct timespec dl = sock_deadline(left < 0 ? 0 : (int)left);

	if (sock_lock_until(&q->lock, &dl) != 0)
		return hv_error(ret_error, -ETIMEDOUT, "%s: the guest agent is "
				"busy with an earlier command", q->path);
	return 0;
}

int qga_execute_json(struct qga *q, const char *command_json, int timeout_ms,
		     bool no_reply, char **ret_reply, char **ret_error)
{
	int64_t deadline = sock_now_ms() +
			   (timeout_ms > 0 ? timeout_ms : QMP_TIMEOUT_MS_DEFAULT);
	const char *why = NULL;
	struct qmpc_msg m;
	char *buf = NULL;
	size_t len = strlen(command_json);
	int r;

	*ret_reply = NULL;
	if (len == 0 || memchr(command_json, '\n', len) ||
	    memchr(command_json, '\xff', len))
		return hv_error(ret_error, -EINVAL, "an agent command is one "
				"line of JSON");
	r = lock_within(q, deadline, ret_error);
	if (r < 0)
		return r;
	r = enter(q, deadline, ret_error);
	if (r < 0)
		goto out;
	buf = malloc(READ_CHUNK);
	if (!buf) {
		r = -ENOMEM;
		goto out;
	}
	if (!q->synced) {
		r = resync(q, buf, deadline);
		if (r < 0) {
			r = leave(q, r, "guest-sync-delimited", ret_error);
			goto out;
		}
	}
	r = send_all(q, command_json, len, deadline);
	if (r == 0)
		r = send_all(q, "\n", 1, deadline);
	if (r == 0 && no_reply) {
		/* Whatever it says later is stale: sync before the next. */
		q->synced = false;
		r = leave(q, 0, "", ret_error);
		goto out;
	}
	if (r == 0)
		r = read_reply(q, buf, deadline, &m, &why);
	if (r == 1) {
		r = reply_text(&m, ret_reply);
		qmpc_msg_release(&m);
	}
	if (r == -EPROTO || r == -EFBIG)
		hv_error(ret_error, r, "%s: the guest agent's reply: %s",
			 q->path, r == -EFBIG ? "longer than QGA_REPLY_MAX "
			 "(8 MiB)" : why ? why : "malformed");
	r = leave(q, r, "the command", ret_error);
out:
	pthread_mutex_unlock(&q->lock);
	free(buf);
	return r;
}

int qga_probe(struct qga *q, int timeout_ms)
{
	char *reply = NULL, *err = NULL;
	int r = qga_execute_json(q, "{\"execute\":\"guest-ping\"}", timeout_ms,
				 false, &reply, &err);

	free(reply);
	free(err);
	if (r == -ENODATA)
		return r;
	return r == 0;
}
