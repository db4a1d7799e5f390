/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Event files. Each open events file is a stream: a bounded queue of JSON
 * lines that events append to. A read with nothing queued is parked, not
 * served by a waiting thread: the request is kept and answered when the next
 * event arrives, so any number of blocked readers costs no FUSE worker.
 * When its domain leaves the tree, a stream ends: what is queued is read,
 * then every read gives end of file, as a pipe whose writer closed.
 */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "events.h"
#include "park.h"

/* Named limits: a reader that does not keep up loses the oldest lines. */
#define STREAM_BYTES_MAX (1u << 20)
#define EVENT_LINE_MAX (64u << 10)

struct line {
	struct line *next;
	size_t len;
	char text[];
};

struct stream {
	struct stream *next, *prev; /* all streams, under streams_lock */
	uint64_t slot;              /* 0: every domain of host */
	struct source *src;         /* the domain's source, with slot */
	int host;                   /* -1: every host */

	/* Guarded by streams_lock. */
	struct line *head, *tail;
	size_t bytes, off;          /* off: bytes of head already read */
	unsigned long dropped;
	struct park park;           /* reads waiting for a line */
	bool ended;                 /* the domain left: EOF once drained */
};

static pthread_mutex_t streams_lock = PTHREAD_MUTEX_INITIALIZER;
static struct stream *streams;
/* Atomic: what a follower of an events file sees as its mtime and size. */
static int64_t last_event_us;
static uint64_t published_bytes;

int64_t events_last_us(void)
{
	return __atomic_load_n(&last_event_us, __ATOMIC_RELAXED);
}

uint64_t events_published_bytes(void)
{
	return __atomic_load_n(&published_bytes, __ATOMIC_RELAXED);
}

struct stream *stream_open(struct dom *d, int host)
{
	struct stream *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->slot = d ? d->slot : 0;
	s->src = d ? d->src : NULL;
	s->host = d ? -1 : host;
	pthread_mutex_lock(&streams_lock);
	s->next = streams;
	if (streams)
		streams->prev = s;
	streams = s;
	pthread_mutex_unlock(&streams_lock);
	return s;
}

/* Copies up to size queued bytes into buf; caller holds streams_lock. */
static size_t take_locked(struct stream *s, char *buf, size_t size)
{
	size_t n = 0;

	while (s->head && n < size) {
		struct line *l = s->head;
		size_t k = l->len - s->off;

		if (k > size - n)
			k = size - n;
		memcpy(buf + n, l->text + s->off, k);
		n += k;
		s->off += k;
		if (s->off == l->len) {
			s->head = l->next;
			if (!s->head)
				s->tail = NULL;
			s->bytes -= l->len;
			s->off = 0;
			free(l);
		}
	}
	return n;
}

/* Answers parked reads while lines are queued; caller holds streams_lock. */
static void serve_locked(struct stream *s)
{
	while (s->park.head && s->head) {
		struct parked *p = park_take_locked(&s->park);
		char *buf = malloc(p->size);
		size_t n;

		if (!buf) {
			fuse_reply_err(p->req, ENOMEM);
			free(p);
			continue;
		}
		n = take_locked(s, buf, p->size);
		fuse_reply_buf(p->req, buf, n);
		free(buf);
		free(p);
	}
	while (s->park.head && s->ended) {
		struct parked *p = park_take_locked(&s->park);

		fuse_reply_buf(p->req, NULL, 0);
		free(p);
	}
}

/*
 * libfuse may call this after the request was answered (it reads the
 * callback before the reply clears it), so data may be a stream released
 * since: only a stream still listed is looked into.
 */
static void on_interrupt(fuse_req_t req, void *data)
{
	struct stream *s;
	struct parked *found = NULL;

	pthread_mutex_lock(&streams_lock);
	for (s = streams; s && s != data; s = s->next)
		;
	if (s)
		found = park_interrupt_locked(&s->park, req);
	pthread_mutex_unlock(&streams_lock);
	park_interrupted(found);
}

void stream_read(fuse_req_t req, struct stream *s, size_t size, int flags,
		 bool eof_when_empty)
{
	char *buf;
	size_t n;

	pthread_mutex_lock(&streams_lock);
	if (s->head) {
		pthread_mutex_unlock(&streams_lock);
		buf = malloc(size);
		if (!buf) {
			fuse_reply_err(req, ENOMEM);
			return;
		}
		pthread_mutex_lock(&streams_lock);
		n = take_locked(s, buf, size);
		pthread_mutex_unlock(&streams_lock);
		fuse_reply_buf(req, buf, n);
		free(buf);
		return;
	}
	if (s->ended) {
		pthread_mutex_unlock(&streams_lock);
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	pthread_mutex_unlock(&streams_lock);
	if (eof_when_empty) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	if (flags & O_NONBLOCK) {
		fuse_reply_err(req, EAGAIN);
		return;
	}
	if (!park_read(&s->park, &streams_lock, req, size, 0, on_interrupt, s))
		return;
	/* An event may have come while the lock was free. */
	serve_locked(s);
	pthread_mutex_unlock(&streams_lock);
}

unsigned stream_poll(struct stream *s, struct fuse_pollhandle *ph)
{
	unsigned revents = 0;

	pthread_mutex_lock(&streams_lock);
	if (s->head) {
		revents = POLLIN | POLLRDNORM;
	} else if (s->ended) {
		revents = POLLIN | POLLRDNORM | POLLHUP;
	} else {
		park_poll_locked(&s->park, &ph);
	}
	pthread_mutex_unlock(&streams_lock);
	if (ph)
		fuse_pollhandle_destroy(ph);
	return revents;
}

void stream_release(struct stream *s)
{
	pthread_mutex_lock(&streams_lock);
	if (s->prev)
		s->prev->next = s->next;
	else
		streams = s->next;
	if (s->next)
		s->next->prev = s->prev;
	park_cancel_locked(&s->park);
	pthread_mutex_unlock(&streams_lock);
	while (s->head) {
		struct line *l = s->head;

		s->head = l->next;
		free(l);
	}
	park_free(&s->park);
	free(s);
}

static const char *const kind_names[] = {
	[HV_EVENT_DEFINED] = "defined",
	[HV_EVENT_UNDEFINED] = "undefined",
	[HV_EVENT_STATE] = "state",
	[HV_EVENT_HYPERVISOR] = "qemu",
	[HV_EVENT_LOST] = "lost",
};

/*
 * One JSON line:
 * {"host":H,"domain":D,"kind":K,"event":E,"state":S,"data":DATA,
 *  "timestamp":{...}}
 * "host" only with several hosts; "state" only for kind "state"; "data" is
 * the peer's JSON or null.
 */
static struct line *format(const char *host, const char *domain,
			   const struct hv_event *ev)
{
	json_object *hostname = json_object_new_string(host ? host : "");
	json_object *dom = json_object_new_string(domain ? domain : "");
	json_object *evname = json_object_new_string(ev->name ? ev->name : "");
	const char *state = ev->kind == HV_EVENT_STATE ?
		hv_state_name(ev->state) : NULL;
	struct line *l = NULL;
	char *text = NULL;
	int n;

	n = asprintf(&text,
		"{%s%s%s\"domain\":%s,\"kind\":\"%s\",\"event\":%s,%s%s%s"
		"\"data\":%s,\"timestamp\":{\"seconds\":%lld,\"microseconds\":%lld}}\n",
		host ? "\"host\":" : "",
		host ? json_object_to_json_string_ext(hostname,
						      JSON_C_TO_STRING_PLAIN) : "",
		host ? "," : "",
		json_object_to_json_string_ext(dom, JSON_C_TO_STRING_PLAIN),
		(unsigned)ev->kind < sizeof(kind_names) / sizeof(*kind_names) ?
			kind_names[ev->kind] : "other",
		json_object_to_json_string_ext(evname, JSON_C_TO_STRING_PLAIN),
		state ? "\"state\":\"" : "", state ? state : "",
		state ? "\"," : "",
		ev->data_json && *ev->data_json ? ev->data_json : "null",
		(long long)ev->seconds, (long long)ev->micros);
	json_object_put(hostname);
	json_object_put(dom);
	json_object_put(evname);
	if (n < 0 || (size_t)n > EVENT_LINE_MAX) {
		free(text);
		return NULL;
	}
	l = malloc(sizeof(*l) + n);
	if (l) {
		memcpy(l->text, text, n);
		l->len = n;
		l->next = NULL;
	}
	free(text);
	return l;
}

static void append_locked(struct stream *s, struct line *l)
{
	/* Keep the queue bounded: drop the oldest whole lines. */
	while (s->head && s->bytes + l->len > STREAM_BYTES_MAX) {
		struct line *old = s->head;

		s->head = old->next;
		if (!s->head)
			s->tail = NULL;
		s->bytes -= old->len;
		s->off = 0;
		s->dropped++;
		free(old);
	}
	if (s->tail)
		s->tail->next = l;
	else
		s->head = l;
	s->tail = l;
	s->bytes += l->len;
	serve_locked(s);
	park_notify_locked(&s->park);
}

void events_publish(struct source *src, struct dom *d, const char *domain_name,
		    const struct hv_event *ev)
{
	uint64_t slot = d ? d->slot : 0;
	int host = host_index(src->host);
	/* The whole connection lost: every domain of it is concerned. */
	bool all_of_src = !d && ev->kind == HV_EVENT_LOST && !ev->domain;
	struct line *line;
	bool listening;

	/* tail -f follows a file by its mtime (see ops.c). */
	__atomic_store_n(&last_event_us, hvfs_wall_us(), __ATOMIC_RELAXED);
	pthread_mutex_lock(&streams_lock);
	listening = streams != NULL;
	pthread_mutex_unlock(&streams_lock);
	if (!listening) /* skip the formatting */
		return;
	line = format(hosts_multi() ? host_name(src->host) : NULL, domain_name,
		      ev);
	if (!line)
		return;
	/* Before any stream has it: a follower's size never lags its data. */
	__atomic_add_fetch(&published_bytes, line->len, __ATOMIC_RELAXED);
	pthread_mutex_lock(&streams_lock);
	for (struct stream *s = streams; s; s = s->next) {
		struct line *copy;

		if (s->ended ||
		    (s->slot && s->slot != slot &&
		     !(all_of_src && s->src == src)) ||
		    (s->host >= 0 && s->host != host))
			continue;
		copy = malloc(sizeof(*copy) + line->len);
		if (!copy)
			continue;
		memcpy(copy, line, sizeof(*copy) + line->len);
		copy->next = NULL;
		append_locked(s, copy);
	}
	pthread_mutex_unlock(&streams_lock);
	free(line);
}

void events_end_domain(uint64_t slot)
{
	pthread_mutex_lock(&streams_lock);
	for (struct stream *s = streams; s; s = s->next) {
		if (s->slot != slot || s->ended)
			continue;
		s->ended = true;
		serve_locked(s);
		park_notify_locked(&s->park);
	}
	pthread_mutex_unlock(&streams_lock);
}
