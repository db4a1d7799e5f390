/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The QMP client's I/O layer: sockets, the reader thread, tables of pending
 * requests. The codec (qmp-codec.c) does all the parsing.
 *
 * One reader thread serves every monitor of the process: it waits on one
 * epoll set for all connected sockets, reads what a ready socket has (one
 * recv of at most READ_CHUNK, so a monitor that sends a lot cannot starve
 * the others), decodes, routes replies to their waiters and runs event
 * handlers. It is started with the first connection and ends when the last
 * struct qmp that used it is freed. Hosts run ~1000 monitors: a thread each
 * cost megabytes of stacks and malloc arenas.
 *
 * A connection is attached to the reader from do_connect() until the reader
 * itself ends it (conn_stop()): on EOF, an error, a protocol violation, or a
 * shutdown() by drop(). Only the reader closes a socket, and drop() waits
 * until it has, so a struct qmp is never touched by the reader after
 * drop() returns.
 *
 * A monitor that let a command time out is "unresponsive": further commands
 * fail at once with -ETIMEDOUT instead of each waiting a whole deadline,
 * until any byte arrives from the peer (the late reply to the timed-out
 * command is exactly that sign of life) or the connection ends. A connection
 * whose greeting or negotiation timed out is kept, unresponsive, for the
 * same reason: a stopped QEMU costs one deadline, not one per caller. Once
 * it has shown life it is dropped and made anew by the next caller.
 *
 * Locks: write_lock is held across one send() so that commands never
 * interleave on the wire; lock guards everything else. write_lock is taken
 * before lock, never after. The reader thread never waits for write_lock
 * while holding lock, so a send that blocks cannot stop replies from being
 * routed.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "qmp-codec.h"
#include "sock.h"

#define READER_STACK (256u << 10)
#define READ_CHUNK (16u << 10)
#define EPOLL_BATCH 64

struct pending {
	struct pending *next;
	int64_t id;
	pthread_cond_t cond;
	bool done;
	int err;            /* transport error, or 0 when msg is the reply */
	struct qmpc_msg msg;
};

struct qmp {
	char *address;
	char *path;         /* unix: */
	char *host, *port;  /* tcp: */

	pthread_mutex_t write_lock;
	pthread_mutex_t lock;
	pthread_cond_t cond; /* greeting read, connection up or down */
	qmp_event_fn event_fn;
	void *event_userdata;
	int fd;              /* owned by the reader thread; valid while alive */
	bool alive;          /* the reader thread is reading fd */
	bool attached;       /* fd is the reader's until conn_stop() ends */
	bool reader_ref;     /* this struct holds a reference on the reader */
	struct qmpc_decoder dec; /* the reader's, while attached */
	bool greeted;
	bool negotiated;
	bool connecting;     /* one thread runs the connect sequence at a time */
	bool dropping;       /* we closed it ourselves: no "lost" event */
	bool unresponsive;   /* a deadline passed; nothing heard since */
	bool held;           /* with unresponsive: no greeting because another
			      * client holds the monitor */
	uint64_t conn_gen;   /* bumped by every new connection */
	int reader_err;      /* why the reader stopped */
	const char *reader_why; /* with -EPROTO: what the peer sent (static) */
	struct pending *pending;
	int64_t last_id;
	bool have_version;
	int major, minor, micro;
};

static struct timespec deadline_after(int timeout_ms)
{
	return sock_deadline(timeout_ms > 0 ? timeout_ms :
					      QMP_TIMEOUT_MS_DEFAULT);
}

/*
 * The message for a failure r of the connection, for humans, unless a more
 * precise one was stored already.
 */
static int explain(struct qmp *q, char **ret_error, int r)
{
	const char *why;

	if (!ret_error || *ret_error)
		return r;

	switch (r) {
	case -EPROTO:
		pthread_mutex_lock(&q->lock);
		why = q->reader_why;
		pthread_mutex_unlock(&q->lock);
		return sock_error(ret_error, r,
				 "%s: the monitor broke the QMP protocol: %s",
				 q->address, why ? why : "a bad message");
	case -ETIMEDOUT:
		return sock_error(ret_error, r,
				 "%s: not responding: no reply in time (monitor "
				 "busy or hung)",
				 q->address);
	case -ENOTCONN:
		return sock_error(ret_error, r,
				 "%s: the monitor closed the connection",
				 q->address);
	}
	return sock_error(ret_error, r, "%s: %s", q->address, strerror(-r));
}

/* Connects the socket: a descriptor, or a negative errno with the
 * socket layer's words after the address. */
static int open_socket(struct qmp *q, const struct timespec *dl,
		       char **ret_error)
{
	char *why = NULL;
	int fd = q->path ? sock_connect_unix(q->path, dl, &why) :
			   sock_connect_tcp(q->host, q->port, dl, &why);

	if (fd < 0 && fd != -ETIMEDOUT)
		sock_error(ret_error, fd, "%s: %s", q->address,
			   why ? why : strerror(-fd));
	free(why);
	return fd;
}

/* Runs on the reader thread; takes ownership of m. */
static void dispatch(struct qmp *q, struct qmpc_msg *m)
{
	struct pending **pp, *p;
	qmp_event_fn fn = NULL;
	void *userdata = NULL;

	pthread_mutex_lock(&q->lock);
	switch (m->kind) {
	case QMP_MSG_GREETING:
		if (!q->greeted) {
			q->greeted = true;
			q->have_version = true;
			q->major = m->major;
			q->minor = m->minor;
			q->micro = m->micro;
			pthread_cond_broadcast(&q->cond);
		}
		break;
	case QMP_MSG_RETURN:
	case QMP_MSG_ERROR:
		/* A reply nobody waits for (timed out, wrong id) is dropped. */
		for (pp = &q->pending; m->has_id && (p = *pp); pp = &p->next) {
			if (p->id != m->id)
				continue;
			*pp = p->next;
			p->done = true;
			p->msg = *m;
			memset(m, 0, sizeof(*m));
			pthread_cond_signal(&p->cond);
			break;
		}
		break;
	case QMP_MSG_EVENT:
		fn = q->event_fn;
		userdata = q->event_userdata;
		break;
	}
	pthread_mutex_unlock(&q->lock);
	if (fn)
		fn(userdata, m->event, m->json, m->seconds, m->micros);
	qmpc_msg_release(m);
}

static int feed(struct qmp *q, struct qmpc_decoder *dec, const char *p,
		size_t n)
{
	struct qmpc_msg m;
	size_t used;
	int r;

	while (n > 0) {
		r = qmpc_decoder_feed(dec, p, n, &used, &m);
		p += used;
		n -= used;
		if (r < 0)
			return r;
		if (r > 0)
			dispatch(q, &m);
	}
	return 0;
}

/* ---- the reader thread, shared by every monitor ---- */

static struct {
	pthread_mutex_t lock;  /* users, started, the thread's life */
	unsigned users;        /* struct qmp holding a reference */
	bool started;
	int epfd;
	int wake_fd;           /* eventfd: the last user left */
	pthread_t thread;
} reader = { .lock = PTHREAD_MUTEX_INITIALIZER, .epfd = -1, .wake_fd = -1 };

/*
 * Ends q's connection: runs on the reader thread only. Waiters fail with
 * err; the event handler hears of the loss unless we dropped it ourselves.
 */
static void conn_stop(struct qmp *q, int err, const char *why)
{
	struct pending *p;
	qmp_event_fn fn;
	void *userdata;
	bool lost;
	int fd;

	pthread_mutex_lock(&q->lock);
	fd = q->fd;
	epoll_ctl(reader.epfd, EPOLL_CTL_DEL, fd, NULL);
	lost = q->negotiated && !q->dropping;
	fn = q->event_fn;
	userdata = q->event_userdata;
	q->alive = false;
	q->negotiated = false;
	q->unresponsive = false; /* the next caller starts afresh */
	q->reader_err = err;
	q->reader_why = why;
	q->fd = -1;
	while ((p = q->pending)) {
		q->pending = p->next;
		p->done = true;
		p->err = err;
		pthread_cond_signal(&p->cond);
	}
	pthread_cond_broadcast(&q->cond);
	/* Wakes a writer blocked in send(); it holds write_lock. */
	shutdown(fd, SHUT_RDWR);
	pthread_mutex_unlock(&q->lock);

	/* No writer can be using fd once we hold write_lock. */
	pthread_mutex_lock(&q->write_lock);
	close(fd);
	pthread_mutex_unlock(&q->write_lock);
	qmpc_decoder_release(&q->dec);

	if (lost && fn)
		fn(userdata, NULL, NULL, 0, 0);

	/* The last touch: drop() and qmp_free() wait for it. */
	pthread_mutex_lock(&q->lock);
	q->attached = false;
	pthread_cond_broadcast(&q->cond);
	pthread_mutex_unlock(&q->lock);
}

/* Reads what q's socket has now (at most one chunk) and handles it. */
static void conn_ready(struct qmp *q, char *buf)
{
	ssize_t n;
	int err = 0, fd;

	/* fd changes only on this thread; the lock orders us after do_connect. */
	pthread_mutex_lock(&q->lock);
	fd = q->fd;
	pthread_mutex_unlock(&q->lock);
	n = recv(fd, buf, READ_CHUNK, MSG_DONTWAIT);
	if (n > 0) {
		/* Any byte is a sign of life. */
		pthread_mutex_lock(&q->lock);
		q->unresponsive = false;
		pthread_mutex_unlock(&q->lock);
		err = feed(q, &q->dec, buf, (size_t)n);
	}
	else if (n == 0)
		err = -ENOTCONN;
	else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
		err = -ENOTCONN;
	if (err)
		conn_stop(q, err, err == -EPROTO ? q->dec.why : NULL);
}

/* No deadline here: waiting for events is this thread's job. */
static void *reader_main(void *arg)
{
	struct epoll_event ev[EPOLL_BATCH];
	char *buf = malloc(READ_CHUNK);
	int n;

	for (;;) {
		n = epoll_wait(reader.epfd, ev, EPOLL_BATCH, -1);
		if (n < 0 && errno != EINTR)
			break; /* cannot happen with a valid epfd */
		for (int i = 0; i < n; i++) {
			struct qmp *q = ev[i].data.ptr;

			if (!q) {
				free(buf);
				return NULL; /* wake_fd: the last user left */
			}
			if (!buf) {
				/* No memory to read with: fail this one. */
				conn_stop(q, -ENOMEM, NULL);
				continue;
			}
			conn_ready(q, buf);
		}
	}
	free(buf);
	return NULL;
}

/* Takes a reference on the reader thread, starting it if needed. */
static int reader_get(struct qmp *q)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	pthread_attr_t attr;
	int r = 0;

	if (q->reader_ref)
		return 0;
	pthread_mutex_lock(&reader.lock);
	if (!reader.started) {
		reader.epfd = epoll_create1(EPOLL_CLOEXEC);
		reader.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (reader.epfd < 0 || reader.wake_fd < 0 ||
		    epoll_ctl(reader.epfd, EPOLL_CTL_ADD, reader.wake_fd,
			      &ev) < 0)
			r = -errno;
		if (r == 0) {
			pthread_attr_init(&attr);
			pthread_attr_setstacksize(&attr, READER_STACK);
			r = -pthread_create(&reader.thread, &attr, reader_main,
					    NULL);
			pthread_attr_destroy(&attr);
		}
		if (r < 0) {
			if (reader.epfd >= 0)
				close(reader.epfd);
			if (reader.wake_fd >= 0)
				close(reader.wake_fd);
			reader.epfd = reader.wake_fd = -1;
		} else {
			reader.started = true;
		}
	}
	if (r == 0) {
		reader.users++;
		q->reader_ref = true;
	}
	pthread_mutex_unlock(&reader.lock);
	return r;
}

/* Gives q's reference back; the last one ends the thread. */
static void reader_put(struct qmp *q)
{
	uint64_t one = 1;

	if (!q->reader_ref)
		return;
	q->reader_ref = false;
	pthread_mutex_lock(&reader.lock);
	if (--reader.users == 0 && reader.started) {
		if (write(reader.wake_fd, &one, sizeof(one)) < 0) {
			/* The counter is set already: it will wake. */
		}
		pthread_join(reader.thread, NULL);
		close(reader.epfd);
		close(reader.wake_fd);
		reader.epfd = reader.wake_fd = -1;
		reader.started = false;
	}
	pthread_mutex_unlock(&reader.lock);
}

/* Ends the connection, if any, and waits until the reader let go of it. */
static void drop(struct qmp *q)
{
	pthread_mutex_lock(&q->lock);
	if (q->alive) {
		q->dropping = true;
		shutdown(q->fd, SHUT_RDWR);
	}
	while (q->attached)
		pthread_cond_wait(&q->cond, &q->lock);
	pthread_mutex_unlock(&q->lock);
}

/* Caller holds q->lock. Only the connection that timed out is marked. */
static void mark_unresponsive_locked(struct qmp *q, uint64_t gen)
{
	if (q->alive && q->conn_gen == gen)
		q->unresponsive = true;
}

/* -ETIMEDOUT at once while the monitor is known unresponsive, else 0. */
static int fail_fast(struct qmp *q, char **ret_error)
{
	bool hung;

	pthread_mutex_lock(&q->lock);
	hung = q->alive && q->unresponsive;
	pthread_mutex_unlock(&q->lock);
	if (!hung)
		return 0;
	return sock_error(ret_error, -ETIMEDOUT,
			 "%s: not responding (monitor busy or hung: an earlier "
			 "command got no reply in time, and nothing came "
			 "since)", q->address);
}

/*
 * Sends cmd, after setting its "id", on the current connection and waits
 * for the reply until dl. Returns 0 and the reply (QMP_MSG_RETURN or
 * QMP_MSG_ERROR) in *ret, or a negative errno.
 */
static int request(struct qmp *q, json_object *cmd, const struct timespec *dl,
		   struct qmpc_msg *ret)
{
	struct pending p = { 0 };
	json_object *id;
	const char *text;
	char *line;
	size_t len;
	uint64_t gen;
	int r = 0, fd = -1;

	pthread_mutex_lock(&q->lock);
	p.id = ++q->last_id;
	gen = q->conn_gen;
	pthread_mutex_unlock(&q->lock);
	id = json_object_new_int64(p.id);
	if (!id || json_object_object_add(cmd, "id", id) < 0) {
		json_object_put(id);
		return -ENOMEM;
	}
	text = json_object_to_json_string_ext(cmd,
			JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	if (!text || asprintf(&line, "%s\n", text) < 0)
		return -ENOMEM;
	len = strlen(line);

	sock_cond_init(&p.cond);
	r = sock_lock_until(&q->write_lock, dl);
	if (r == 0) {
		pthread_mutex_lock(&q->lock);
		if (q->alive && q->conn_gen == gen) {
			fd = q->fd;
			p.next = q->pending;
			q->pending = &p;
		} else {
			/* Our connection stopped before we could send: say
			 * why it stopped (a protocol error is not a close). */
			r = q->conn_gen == gen && q->reader_err ?
			    q->reader_err : -ENOTCONN;
		}
		pthread_mutex_unlock(&q->lock);
		if (r == 0)
			r = sock_write_all(fd, line, len, dl, NULL);
		pthread_mutex_unlock(&q->write_lock);
	}
	free(line);

	pthread_mutex_lock(&q->lock);
	while (r == 0 && !p.done) {
		if (pthread_cond_timedwait(&p.cond, &q->lock, dl) == ETIMEDOUT &&
		    !p.done)
			r = -ETIMEDOUT;
	}
	if (!p.done && fd >= 0) {
		/* Still in the table: take it out so a late reply is dropped. */
		struct pending **pp = &q->pending;

		while (*pp && *pp != &p)
			pp = &(*pp)->next;
		if (*pp)
			*pp = p.next;
	}
	/* A send that failed because the connection stopped: say why. */
	if (r == -ENOTCONN && p.done && p.err)
		r = p.err;
	if (r == 0)
		r = p.err;
	/* The peer let a deadline pass (no reply, or it stopped reading):
	 * callers fail at once until it shows a sign of life. */
	if (r == -ETIMEDOUT)
		mark_unresponsive_locked(q, gen);
	pthread_mutex_unlock(&q->lock);
	pthread_cond_destroy(&p.cond);
	if (r < 0) {
		qmpc_msg_release(&p.msg);
		return r;
	}
	*ret = p.msg;
	return 0;
}

/* Turns a reply into 0 or the mapped errno, with QEMU's text. */
static int reply_result(struct qmpc_msg *m, char **ret_error)
{
	if (m->kind != QMP_MSG_ERROR)
		return 0;
	return sock_error(ret_error, qmp_error_to_errno(m->error_class), "%s",
			 m->desc);
}

/*
 * Whether another client holds the UNIX monitor at path: QEMU serves one
 * client at a time and leaves later ones unaccepted, without a greeting. The
 * kernel's socket diagnostics list the sockets QEMU accepted under the
 * monitor's path: one that is live (not shut down: its client has not
 * closed) and whose peer is not our own socket (inode own_ino, 0 for none)
 * belongs to someone else. A stopped QEMU still holding a connection we
 * closed is not "held".
 */
static bool monitor_held(const char *path, ino_t own_ino)
{
	struct {
		struct nlmsghdr nlh;
		struct unix_diag_req req;
	} msg = {
		.nlh = { .nlmsg_len = sizeof(msg),
			 .nlmsg_type = SOCK_DIAG_BY_FAMILY,
			 .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP },
		.req = { .sdiag_family = AF_UNIX,
			 .udiag_states = 1 << 1, /* TCP_ESTABLISHED */
			 .udiag_show = UDIAG_SHOW_NAME | UDIAG_SHOW_PEER },
	};
	char buf[16384] __attribute__((aligned(NLMSG_ALIGNTO)));
	struct timeval tv = { .tv_sec = 1 };
	bool held = false, done = false;
	int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC,
			NETLINK_SOCK_DIAG);

	if (fd < 0)
		return false;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (send(fd, &msg, sizeof(msg), 0) < 0)
		done = true;
	while (!done) {
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		struct nlmsghdr *h = (struct nlmsghdr *)buf;

		if (n <= 0)
			break;
		for (; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
			struct unix_diag_msg *m = NLMSG_DATA(h);
			struct rtattr *a = (struct rtattr *)(m + 1);
			int len = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof(*m)));
			bool named = false, live = true;
			uint32_t peer = 0;

			if (h->nlmsg_type == NLMSG_DONE ||
			    h->nlmsg_type == NLMSG_ERROR) {
				done = true;
				break;
			}
			for (; RTA_OK(a, len); a = RTA_NEXT(a, len)) {
				size_t alen = RTA_PAYLOAD(a);

				/* The name may hold its NUL. */
				if (a->rta_type == UNIX_DIAG_NAME)
					named = strnlen(RTA_DATA(a), alen) ==
							strlen(path) &&
						memcmp(RTA_DATA(a), path,
						       strlen(path)) == 0;
				else if (a->rta_type == UNIX_DIAG_PEER &&
					 alen >= 4)
					memcpy(&peer, RTA_DATA(a), 4);
				else if (a->rta_type == UNIX_DIAG_SHUTDOWN &&
					 alen >= 1)
					live = *(uint8_t *)RTA_DATA(a) == 0;
			}
			/* udiag_ino 0: not accepted yet (ours, waiting). */
			if (named && live && m->udiag_ino && peer &&
			    peer != own_ino)
				held = true;
		}
	}
	close(fd);
	return held;
}

/* Why a connection (fd, or -1 if connect() itself timed out) got no
 * greeting before the deadline. */
static void no_greeting(struct qmp *q, int fd, char **ret_error)
{
	struct stat st;
	ino_t own = fd >= 0 && fstat(fd, &st) == 0 ? st.st_ino : 0;
	bool held = q->path && monitor_held(q->path, own);

	pthread_mutex_lock(&q->lock);
	q->held = held;
	pthread_mutex_unlock(&q->lock);
	if (held)
		sock_error(ret_error, -ETIMEDOUT,
			  "%s: monitor busy: another client holds it (is "
			  "another hvfs running?)", q->address);
	else
		sock_error(ret_error, -ETIMEDOUT,
			  "%s: not responding: no greeting in time (monitor "
			  "busy or hung)",
			  q->address);
}

static int do_connect(struct qmp *q, const struct timespec *dl,
		      char **ret_error)
{
	struct epoll_event ev = { .events = EPOLLIN };
	struct qmpc_msg m = { 0 };
	json_object *cmd;
	bool keep;
	int fd, r;

	r = reader_get(q);
	if (r < 0)
		return r;
	fd = open_socket(q, dl, ret_error);
	if (fd == -ETIMEDOUT) /* QEMU's listen backlog is full */
		no_greeting(q, -1, ret_error);
	if (fd < 0)
		return fd;

	pthread_mutex_lock(&q->lock);
	q->fd = fd;
	q->alive = true;
	q->attached = true;
	q->greeted = false;
	q->negotiated = false;
	q->dropping = false;
	q->unresponsive = false;
	q->held = false;
	q->conn_gen++;
	q->reader_err = 0;
	qmpc_decoder_init(&q->dec);
	ev.data.ptr = q;
	if (epoll_ctl(reader.epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		r = -errno;
		q->alive = false;
		q->attached = false;
		q->fd = -1;
		pthread_mutex_unlock(&q->lock);
		close(fd);
		return r;
	}
	while (q->alive && !q->greeted &&
	       pthread_cond_timedwait(&q->cond, &q->lock, dl) != ETIMEDOUT)
		;
	r = q->greeted ? 0 : q->alive ? -ETIMEDOUT : q->reader_err;
	if (r == -ETIMEDOUT)
		mark_unresponsive_locked(q, q->conn_gen);
	pthread_mutex_unlock(&q->lock);
	if (r == -ETIMEDOUT)
		no_greeting(q, fd, ret_error);

	if (r == 0) {
		cmd = json_object_new_object();
		if (!cmd || json_object_object_add(cmd, "execute",
				json_object_new_string("qmp_capabilities")) < 0)
			r = -ENOMEM;
		else
			r = request(q, cmd, dl, &m);
		json_object_put(cmd);
		if (r == 0)
			r = reply_result(&m, ret_error);
		qmpc_msg_release(&m);
	}

	pthread_mutex_lock(&q->lock);
	if (r == 0 && !q->alive)
		r = q->reader_err;
	if (r == 0)
		q->negotiated = true;
	/* A peer that timed out keeps its connection, marked unresponsive:
	 * the next callers fail at once instead of connecting again. */
	keep = r == -ETIMEDOUT && q->alive && q->unresponsive;
	pthread_mutex_unlock(&q->lock);
	if (r < 0 && !keep)
		drop(q);
	return r;
}

static int connect_until(struct qmp *q, const struct timespec *dl,
			 char **ret_error)
{
	bool stale;
	int r = 0;

	pthread_mutex_lock(&q->lock);
	while (q->connecting && !(q->alive && q->negotiated) && r == 0)
		if (pthread_cond_timedwait(&q->cond, &q->lock, dl) == ETIMEDOUT)
			r = -ETIMEDOUT;
	if (r < 0 || (q->alive && q->negotiated)) {
		pthread_mutex_unlock(&q->lock);
		/* Another thread's attempt took all our time. */
		return r < 0 ? sock_error(ret_error, r,
					 "%s: not responding: no connection in time "
					 "(monitor busy or hung)", q->address) : 0;
	}
	if (q->alive && q->unresponsive) {
		bool held = q->held, greeted = q->greeted;

		pthread_mutex_unlock(&q->lock);
		if (held)
			return sock_error(ret_error, -ETIMEDOUT,
					 "%s: monitor busy: another client holds "
					 "it (is another hvfs running?)",
					 q->address);
		return sock_error(ret_error, -ETIMEDOUT,
				 "%s: not responding: no %s in time (monitor "
				 "busy or hung), and nothing came since",
				 q->address,
				 greeted ? "reply to negotiation" : "greeting");
	}
	q->connecting = true;
	stale = q->alive; /* kept after a timeout; it has shown life since */
	pthread_mutex_unlock(&q->lock);
	if (stale)
		drop(q);
	pthread_mutex_lock(&q->lock);
	/* The last connection has ended; wait until the reader let go of it
	 * (it never waits for anything but handlers, so this is short). */
	while (q->attached)
		pthread_cond_wait(&q->cond, &q->lock);
	pthread_mutex_unlock(&q->lock);

	r = do_connect(q, dl, ret_error);

	pthread_mutex_lock(&q->lock);
	q->connecting = false;
	pthread_cond_broadcast(&q->cond);
	pthread_mutex_unlock(&q->lock);
	if (r < 0)
		explain(q, ret_error, r);
	return r;
}

int qmp_connect(struct qmp *q, int timeout_ms, char **ret_error)
{
	struct timespec dl = deadline_after(timeout_ms);

	return connect_until(q, &dl, ret_error);
}

void qmp_disconnect(struct qmp *q)
{
	drop(q);
}

bool qmp_is_connected(struct qmp *q)
{
	bool r;

	pthread_mutex_lock(&q->lock);
	r = q->alive && q->negotiated;
	pthread_mutex_unlock(&q->lock);
	return r;
}

/* Connects if needed, runs cmd, returns the reply in *ret. */
static int run(struct qmp *q, json_object *cmd, int timeout_ms,
	       struct qmpc_msg *ret, char **ret_error)
{
	struct timespec dl = deadline_after(timeout_ms);
	int r = connect_until(q, &dl, ret_error);

	if (r == 0)
		r = fail_fast(q, ret_error);
	if (r == 0)
		r = request(q, cmd, &dl, ret);
	if (r < 0)
		return explain(q, ret_error, r);
	return 0;
}

int qmp_execute(struct qmp *q, const char *command, const char *args_json,
		int timeout_ms, char **ret_json, char **ret_error)
{
	struct qmpc_msg m = { 0 };
	json_object *cmd, *args = NULL;
	int r;

	if (!command || !*command)
		return sock_error(ret_error, -EINVAL, "no command");
	if (args_json &&
	    qmpc_json_parse_object(args_json, strlen(args_json), &args) < 0)
		return sock_error(ret_error, -EINVAL,
				 "arguments are not one JSON object");
	cmd = json_object_new_object();
	if (!cmd || json_object_object_add(cmd, "execute",
			json_object_new_string(command)) < 0 ||
	    (args && json_object_object_add(cmd, "arguments", args) < 0)) {
		json_object_put(cmd);
		json_object_put(args);
		return -ENOMEM;
	}
	r = run(q, cmd, timeout_ms, &m, ret_error);
	json_object_put(cmd);
	if (r == 0)
		r = reply_result(&m, ret_error);
	if (r == 0 && ret_json) {
		*ret_json = m.json;
		m.json = NULL;
	}
	qmpc_msg_release(&m);
	return r;
}

int qmp_execute_json(struct qmp *q, const char *command_json, int timeout_ms,
		     char **ret_reply, char **ret_error)
{
	struct qmpc_msg m = { 0 };
	json_object *cmd = NULL;
	char *reply;
	int r;
	const char *why = "no command";

	if (!command_json ||
	    (r = qmpc_command_parse(command_json, strlen(command_json), &cmd,
				    NULL, &why)) < 0)
		return sock_error(ret_error, command_json ? r : -EINVAL,
				 "not one JSON object with a string "
				 "\"execute\" member: %s", why);
	json_object_object_del(cmd, "id");
	r = run(q, cmd, timeout_ms, &m, ret_error);
	json_object_put(cmd);
	if (r < 0)
		return r;
	if (asprintf(&reply, "{\"%s\": %s}",
		     m.kind == QMP_MSG_ERROR ? "error" : "return", m.json) < 0)
		r = -ENOMEM;
	else if (ret_reply)
		*ret_reply = reply;
	else
		free(reply);
	qmpc_msg_release(&m);
	return r;
}

int qmp_version(struct qmp *q, int *ret_major, int *ret_minor,
		int *ret_micro)
{
	int r = -ENOTCONN;

	pthread_mutex_lock(&q->lock);
	if (q->have_version) {
		*ret_major = q->major;
		*ret_minor = q->minor;
		*ret_micro = q->micro;
		r = 0;
	}
	pthread_mutex_unlock(&q->lock);
	return r;
}

void qmp_set_event_handler(struct qmp *q, qmp_event_fn fn, void *userdata)
{
	pthread_mutex_lock(&q->lock);
	q->event_fn = fn;
	q->event_userdata = userdata;
	pthread_mutex_unlock(&q->lock);
}

const char *qmp_address(const struct qmp *q)
{
	return q->address;
}

static int parse_address(struct qmp *q, const char *address)
{
	struct sockaddr_un sun;
	const char *rest, *colon;
	size_t hlen;

	if (strncmp(address, "unix:", 5) == 0) {
		rest = address + 5;
		if (!*rest || strlen(rest) >= sizeof(sun.sun_path))
			return -EINVAL;
		q->path = strdup(rest);
		return q->path ? 0 : -ENOMEM;
	}
	if (strncmp(address, "tcp:", 4) != 0)
		return -EINVAL;
	rest = address + 4;
	colon = strrchr(rest, ':');
	if (!colon || colon == rest || !colon[1])
		return -EINVAL;
	hlen = (size_t)(colon - rest);
	if (rest[0] == '[' && hlen > 2 && rest[hlen - 1] == ']') {
		rest++;
		hlen -= 2;
	}
	q->host = strndup(rest, hlen);
	q->port = strdup(colon + 1);
	return q->host && q->port ? 0 : -ENOMEM;
}

int qmp_new(const char *address, struct qmp **ret)
{
	struct qmp *q;
	int r;

	if (!address)
		return -EINVAL;
	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->fd = -1;
	pthread_mutex_init(&q->lock, NULL);
	pthread_mutex_init(&q->write_lock, NULL);
	sock_cond_init(&q->cond);
	q->address = strdup(address);
	r = q->address ? parse_address(q, address) : -ENOMEM;
	if (r < 0) {
		qmp_free(q);
		return r;
	}
	*ret = q;
	return 0;
}

struct qmp *qmp_free(struct qmp *q)
{
	if (!q)
		return NULL;
	drop(q);
	reader_put(q);
	pthread_cond_destroy(&q->cond);
	pthread_mutex_destroy(&q->write_lock);
	pthread_mutex_destroy(&q->lock);
	free(q->address);
	free(q->path);
	free(q->host);
	free(q->port);
	free(q);
	return NULL;
}

int qmp_peer_pid(struct qmp *q, int *ret_pid)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	int r = 0;

	if (!q->path)
		return -EOPNOTSUPP;
	/* While alive, fd stays open: conn_stop() closes it after. */
	pthread_mutex_lock(&q->lock);
	if (!q->alive)
		r = -ENOTCONN;
	else if (getsockopt(q->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		r = -errno;
	pthread_mutex_unlock(&q->lock);
	if (r == 0 && cred.pid <= 0)
		r = -ESRCH; /* the peer is in a pid namespace we cannot see */
	if (r == 0)
		*ret_pid = cred.pid;
	return r;
}
