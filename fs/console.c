/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Console files. A domain's console, once wanted, is one struct console:
 * the ring of its last output, the lib's handle, and the open files reading
 * it. Offsets are positions in the console's output since hvfs attached
 * (a reader's own shift skips what the ring lost), so `cat`, `grep`, `tail`
 * and `less` read it as a log that grows. A read at the end is parked, as in
 * events.c, and answered when output comes.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "console.h"
#include "park.h"
#include "ring.h"

struct console_reader {
	struct console_reader *next; /* the console's readers */
	struct console *con;
	int64_t shift;               /* position = file offset + shift */
	uint64_t pos;                /* where its last read ended (poll) */
	struct park park;            /* reads waiting for output */
};

struct console {
	struct console *next;
	uint64_t slot;
	struct dom *d;               /* a reference */

	/* Guarded by lock. */
	struct ring ring;            /* CONSOLE_RING bytes (buf from the
				      * first output); total: the bytes
				      * output since attached first */
	bool wanted;                 /* attach whenever the domain runs */
	bool attached;               /* output flows */
	bool ended;                  /* the lib said the end: close hc */
	bool gone;                   /* the domain left the tree */
	int64_t next_try_ms;
	unsigned busy;               /* attaches refused as busy in a row */
	struct console_reader *readers;

	/* hc's life and the writes to it; never taken with lock held. */
	pthread_mutex_t io;
	struct hv_console *hc;       /* also read under lock */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t kick = PTHREAD_COND_INITIALIZER;
static struct console *consoles;
static pthread_t worker;
static bool worker_running, stopping;

static struct console *find_locked(uint64_t slot)
{
	struct console *c;

	for (c = consoles; c && (c->slot != slot || c->gone); c = c->next)
		;
	return c;
}

/* Caller holds lock. Where a read at off begins for r (ring.h). */
static uint64_t position_locked(struct console_reader *r, off_t off)
{
	return ring_position(&r->con->ring, &r->shift, off);
}

/* Caller holds lock. Copies up to size bytes from pos into a new buffer. */
static char *copy_locked(struct console *c, uint64_t pos, size_t size,
			 size_t *ret_n)
{
	size_t n = ring_count(&c->ring, pos, size);
	char *buf = malloc(n ? n : 1);

	if (!buf)
		return NULL;
	ring_copy(&c->ring, pos, buf, n);
	*ret_n = n;
	return buf;
}

/* Caller holds lock. Answers r's parked reads that output or an end can
 * answer. */
static void serve_locked(struct console_reader *r)
{
	struct console *c = r->con;

	while (r->park.head) {
		struct parked *p = r->park.head;
		uint64_t pos = position_locked(r, p->off);
		size_t n = 0;
		char *buf;

		if (pos == c->ring.total && !c->gone)
			return;
		park_take_locked(&r->park);
		if (pos == c->ring.total) {
			fuse_reply_buf(p->req, NULL, 0);
		} else if (!(buf = copy_locked(c, pos, p->size, &n))) {
			fuse_reply_err(p->req, ENOMEM);
		} else {
			r->pos = pos + n;
			fuse_reply_buf(p->req, buf, n);
			free(buf);
		}
		free(p);
	}
}

/* Caller holds lock. Output or an end came: wake readers and pollers. */
static void wake_locked(struct console *c)
{
	for (struct console_reader *r = c->readers; r; r = r->next) {
		serve_locked(r);
		park_notify_locked(&r->park);
	}
}

/* The lib's function: output, or the end of the console. */
static void on_output(void *userdata, const char *data, size_t len, int err,
		      const char *msg)
{
	struct console *c = userdata;

	pthread_mutex_lock(&lock);
	if (len > 0 && !c->ring.buf)
		c->ring.buf = malloc(CONSOLE_RING);
	if (len > 0 && !c->ring.buf) {
		/* Out of memory: this output is lost. */
	} else if (len > 0) {
		ring_append(&c->ring, data, len);
		wake_locked(c);
	} else {
		c->attached = false;
		c->ended = true;
		pthread_cond_signal(&kick);
	}
	pthread_mutex_unlock(&lock);
	if (len == 0)
		hvfs_log(err ? LOG_WARNING : LOG_INFO, "%s: console ended: %s",
			 c->d->name, err ? (msg ? msg : strerror(-err))
					 : "end of file");
}

/* Caller holds c->io, not lock. Closes an ended handle; attaches. */
static int attach(struct console *c, char **ret_error)
{
	struct hv_console *hc = NULL, *old;
	struct hv_conn *conn = dom_conn(c->d);
	int r;

	pthread_mutex_lock(&lock);
	old = c->ended ? c->hc : NULL;
	if (old)
		c->hc = NULL;
	c->ended = false;
	hc = c->hc;
	pthread_mutex_unlock(&lock);
	hv_console_close(old);
	if (hc)
		return 0;
	if (!conn)
		return hv_error(ret_error, -ENOTCONN, "%s: not connected",
				c->d->name);
	r = hv_console_open(conn, c->d->hv_name, on_output, c, &hc,
			    ret_error);
	pthread_mutex_lock(&lock);
	if (r == 0) {
		c->hc = hc;
		/* The end may have come already. */
		c->attached = !c->ended;
		hvfs_log(LOG_INFO, "%s: console attached", c->d->name);
	} else {
		c->next_try_ms = hvfs_now_ms() + CONSOLE_RETRY_MS;
	}
	pthread_mutex_unlock(&lock);
	return r;
}

/* Whether d may have a console to attach to now. */
static bool may_run(struct dom *d)
{
	enum hv_state s;

	return !dom_state_cached(d, &s) || s == HV_STATE_RUNNING ||
	       s == HV_STATE_PAUSED || s == HV_STATE_BLOCKED ||
	       s == HV_STATE_PMSUSPENDED;
}

/* Caller holds lock. A console the worker has to act on, or NULL. */
static struct console *due_locked(int64_t now)
{
	for (struct console *c = consoles; c; c = c->next) {
		if (c->gone ? c->hc || !c->readers : c->ended && c->hc)
			return c;
		if (!c->gone && c->wanted && !c->hc && now >= c->next_try_ms &&
		    may_run(c->d))
			return c;
	}
	return NULL;
}

static void free_console(struct console *c)
{
	pthread_mutex_destroy(&c->io);
	dom_unref(c->d);
	free(c->ring.buf);
	free(c);
}

static void *worker_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&lock);
	while (!stopping) {
		struct console *c = due_locked(hvfs_now_ms());
		struct timespec ts;
		char *err = NULL;
		int r;

		if (!c) {
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += 1;
			pthread_cond_timedwait(&kick, &lock, &ts);
			continue;
		}
		if (c->gone && !c->hc) {
			/* No reader left: forget it. */
			struct console **pp = &consoles;

			while (*pp != c)
				pp = &(*pp)->next;
			*pp = c->next;
			pthread_mutex_unlock(&lock);
			free_console(c);
			pthread_mutex_lock(&lock);
			continue;
		}
		if (c->gone || c->ended) {
			struct hv_console *hc = c->hc;

			c->hc = NULL;
			c->attached = false;
			c->ended = false;
			pthread_mutex_unlock(&lock);
			pthread_mutex_lock(&c->io);
			hv_console_close(hc);
			pthread_mutex_unlock(&c->io);
			pthread_mutex_lock(&lock);
			continue;
		}
		pthread_mutex_unlock(&lock);
		pthread_mutex_lock(&c->io);
		r = attach(c, &err);
		pthread_mutex_unlock(&c->io);
		pthread_mutex_lock(&lock);
		c->busy = r == -EBUSY ? c->busy + 1 : 0;
		if (c->busy >= CONSOLE_BUSY_MAX) {
			/* Another client took it (virsh console --force):
			 * hvfs lets go until the file is opened again. */
			c->wanted = false;
			c->busy = 0;
			pthread_mutex_unlock(&lock);
			dom_set_error(c->d, "console", r, err);
			pthread_mutex_lock(&lock);
		}
		free(err);
	}
	pthread_mutex_unlock(&lock);
	return NULL;
}

/* Caller holds lock. d's console, made (and the worker started) if none. */
static struct console *get_locked(struct dom *d)
{
	struct console *c = find_locked(d->slot);

	if (c)
		return c;
	if (!worker_running) {
		if (pthread_create(&worker, NULL, worker_main, NULL) != 0)
			return NULL;
		worker_running = true;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->slot = d->slot;
	c->ring.size = CONSOLE_RING;
	c->d = dom_ref(d);
	pthread_mutex_init(&c->io, NULL);
	c->next = consoles;
	consoles = c;
	return c;
}

/* Holds d's console (attaching now if it is not held): the console, or
 * NULL with *ret_err. */
static struct console *hold(struct dom *d, int *ret_err, char **ret_error)
{
	struct console *c;
	bool held;
	int r;

	pthread_mutex_lock(&lock);
	c = get_locked(d);
	if (c) {
		c->wanted = true;
		held = c->attached;
	}
	pthread_mutex_unlock(&lock);
	if (!c) {
		*ret_err = hv_error(ret_error, -ENOMEM, "out of memory");
		return NULL;
	}
	*ret_err = 0;
	if (held)
		return c;
	pthread_mutex_lock(&c->io);
	r = attach(c, ret_error);
	pthread_mutex_unlock(&c->io);
	*ret_err = r;
	return c;
}

int console_open(struct dom *d, bool attach, struct console_reader **ret,
		 char **ret_error)
{
	struct console_reader *r;
	struct console *c;
	int err = 0;

	if (attach) {
		c = hold(d, &err, ret_error);
	} else {
		pthread_mutex_lock(&lock);
		c = get_locked(d);
		pthread_mutex_unlock(&lock);
		if (!c)
			err = hv_error(ret_error, -ENOMEM, "out of memory");
	}
	if (!c)
		return err;
	if (err == -EBUSY || err == -EOPNOTSUPP) {
		pthread_mutex_lock(&lock);
		if (!c->readers)
			c->wanted = false;
		pthread_mutex_unlock(&lock);
		return err;
	}
	/* Not running, or the peer is away: the worker tries again. */
	if (!ret)
		return 0;
	r = calloc(1, sizeof(*r));
	if (!r)
		return hv_error(ret_error, -ENOMEM, "out of memory");
	r->con = c;
	pthread_mutex_lock(&lock);
	r->pos = ring_start(&c->ring);
	r->next = c->readers;
	c->readers = r;
	pthread_mutex_unlock(&lock);
	*ret = r;
	return 0;
}

void console_release(struct console_reader *r)
{
	struct console *c = r->con;

	pthread_mutex_lock(&lock);
	for (struct console_reader **pp = &c->readers; *pp;
	     pp = &(*pp)->next) {
		if (*pp == r) {
			*pp = r->next;
			break;
		}
	}
	park_cancel_locked(&r->park);
	if (c->gone && !c->readers)
		pthread_cond_signal(&kick);
	pthread_mutex_unlock(&lock);
	park_free(&r->park);
	free(r);
}

/* As events.c's: data may be a reader closed since; only a reader still
 * listed is looked into. */
static void on_interrupt(fuse_req_t req, void *data)
{
	struct console_reader *r = NULL;
	struct parked *found = NULL;

	pthread_mutex_lock(&lock);
	for (struct console *c = consoles; c && !r; c = c->next)
		for (r = c->readers; r && r != data; r = r->next)
			;
	if (r)
		found = park_interrupt_locked(&r->park, req);
	pthread_mutex_unlock(&lock);
	park_interrupted(found);
}

void console_read(fuse_req_t req, struct console_reader *r, size_t size,
		  off_t off, int flags, bool as_file)
{
	struct console *c = r->con;
	uint64_t pos;
	size_t n = 0;
	char *buf;

	pthread_mutex_lock(&lock);
	pos = position_locked(r, off);
	if (pos < c->ring.total) {
		buf = copy_locked(c, pos, size, &n);
		if (buf)
			r->pos = pos + n;
		pthread_mutex_unlock(&lock);
		if (!buf)
			fuse_reply_err(req, ENOMEM);
		else
			fuse_reply_buf(req, buf, n);
		free(buf);
		return;
	}
	r->pos = pos;
	pthread_mutex_unlock(&lock);
	if (as_file || c->gone) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	if (flags & O_NONBLOCK) {
		fuse_reply_err(req, EAGAIN);
		return;
	}
	if (!park_read(&r->park, &lock, req, size, off, on_interrupt, r))
		return;
	/* Output may have come while the lock was free. */
	serve_locked(r);
	pthread_mutex_unlock(&lock);
}

unsigned console_poll(struct console_reader *r, struct fuse_pollhandle *ph)
{
	struct console *c = r->con;
	unsigned revents = POLLOUT | POLLWRNORM;

	pthread_mutex_lock(&lock);
	if (r->pos < c->ring.total) {
		revents |= POLLIN | POLLRDNORM;
	} else if (c->gone) {
		revents |= POLLIN | POLLRDNORM | POLLHUP;
	} else {
		park_poll_locked(&r->park, &ph);
	}
	pthread_mutex_unlock(&lock);
	if (ph)
		fuse_pollhandle_destroy(ph);
	return revents;
}

uint64_t console_size(struct dom *d)
{
	struct console *c;
	uint64_t n;

	pthread_mutex_lock(&lock);
	c = find_locked(d->slot);
	n = c ? c->ring.total : 0;
	pthread_mutex_unlock(&lock);
	return n;
}

int console_write(struct dom *d, const char *buf, size_t len,
		  char **ret_reply, size_t *ret_reply_len, char **ret_error)
{
	struct console *c;
	int r;

	c = hold(d, &r, ret_error);
	if (!c || r < 0)
		return r;
	pthread_mutex_lock(&c->io);
	if (c->hc)
		r = hv_console_write(c->hc, buf, len, ret_error);
	else
		r = hv_error(ret_error, -ENODATA, "%s: no console attached",
			     d->name);
	pthread_mutex_unlock(&c->io);
	return r;
}

void console_event(struct dom *d, const struct hv_event *ev)
{
	struct console *c;

	if (!d || ev->kind != HV_EVENT_STATE || ev->state != HV_STATE_RUNNING)
		return;
	pthread_mutex_lock(&lock);
	c = find_locked(d->slot);
	if (c) {
		c->next_try_ms = 0;
		pthread_cond_signal(&kick);
	}
	pthread_mutex_unlock(&lock);
}

void console_end_domain(uint64_t slot)
{
	struct console *c;

	pthread_mutex_lock(&lock);
	c = find_locked(slot);
	if (c) {
		c->gone = true;
		wake_locked(c);
		pthread_cond_signal(&kick);
	}
	pthread_mutex_unlock(&lock);
}

void console_stop(void)
{
	pthread_mutex_lock(&lock);
	stopping = true;
	pthread_cond_signal(&kick);
	pthread_mutex_unlock(&lock);
	if (worker_running)
		pthread_join(worker, NULL);
	worker_running = false;
	while (consoles) {
		struct console *c = consoles;

		consoles = c->next;
		hv_console_close(c->hc);
		free_console(c);
	}
}
