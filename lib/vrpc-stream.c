/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libvirt streams: data that follows a call's reply in STREAM packets of the
 * call's serial: the download (server to client) that screenshots use, and
 * the streams both ways of consoles. The client's reader thread queues
 * the packets into the struct vstream (vrpc.c); this side opens, waits,
 * finishes and aborts, through the client only. See vrpc.h for the contract
 * and vrpc-client.h for the client's insides this works on.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "sock.h"
#include "vrpc-client.h"

/* One empty STREAM packet of the stream opened by `serial`. */
static int stream_send(struct vrpc *c, uint64_t gen, uint32_t prog,
		       int32_t proc, uint32_t serial, int32_t status,
		       const struct timespec *deadline)
{
	const struct vrpc_header h = {
		.len = VRPC_HEADER_SIZE,
		.prog = prog,
		.vers = VRPC_PROTOCOL_VERSION,
		.proc = proc,
		.type = VRPC_STREAM,
		.serial = serial,
		.status = status,
	};
	uint8_t pkt[VRPC_HEADER_SIZE];

	vrpc_header_encode(&h, pkt);
	return vrpc_send_packet(c, gen, pkt, sizeof(pkt), deadline);
}

/* Caller holds c->lock. Waits until the stream saw `oks` OK packets, failed,
 * or the deadline passed (-ETIMEDOUT). */
static int stream_wait(struct vrpc *c, struct vstream *st, int oks,
		       const struct timespec *deadline)
{
	while (!st->err && st->oks < oks)
		if (pthread_cond_timedwait(&st->cond, &c->lock, deadline) ==
			    ETIMEDOUT &&
		    !st->err && st->oks < oks)
			return -ETIMEDOUT;
	return st->err;
}

/* Takes st off the client's list: no packet reaches it afterwards. */
static void stream_unlink(struct vrpc *c, struct vstream *st)
{
	pthread_mutex_lock(&c->lock);
	for (struct vstream **pp = &c->streams; *pp; pp = &(*pp)->next) {
		if (*pp == st) {
			*pp = st->next;
			break;
		}
	}
	pthread_mutex_unlock(&c->lock);
}

int vrpc_call_download(struct vrpc *c, uint32_t prog, int32_t proc,
		       xdrproc_t args_fn, const void *args, xdrproc_t ret_fn,
		       void *ret, size_t max, uint8_t **ret_data,
		       size_t *ret_len, int64_t *ret_late, char **ret_error)
{
	struct timespec deadline = sock_deadline(c->timeout_ms);
	struct vstream st = { .max = max };
	uint8_t *pkt = NULL, *reply = NULL;
	size_t size, rsize;
	bool decoded = false, over = false;
	uint64_t gen;
	int r;

	r = vrpc_ensure_connected(c, &deadline, &gen, ret_error);
	if (r < 0)
		return r;
	r = vrpc_call_encode(prog, proc, 0, args_fn, args, &pkt, &size);
	if (r < 0)
		return sock_error(ret_error, r,
				 "cannot encode the arguments of call %d", proc);
	sock_cond_init(&st.cond);

	r = vrpc_exchange(c, gen, pkt, size, &deadline, &reply, &rsize, &st,
			    ret_late, ret_error);
	free(pkt);
	if (r == 0) {
		r = vrpc_payload_decode(reply + VRPC_HEADER_SIZE,
					rsize - VRPC_HEADER_SIZE, ret_fn, ret);
		free(reply);
		if (r < 0)
			sock_error(ret_error, r, "%s: undecodable reply to call %d",
				  c->uri->name, proc);
		decoded = r == 0;
	}
	if (r == 0) {
		pthread_mutex_lock(&c->lock);
		r = stream_wait(c, &st, 1, &deadline);
		over = st.oks >= 2; /* the daemon ended it (an ERROR) */
		pthread_mutex_unlock(&c->lock);
		if (r == 0) {
			/* The end of the data: finish as libvirt's client
			 * does, so that the daemon frees its side. */
			if (stream_send(c, gen, prog, proc, st.serial, VRPC_OK,
					&deadline) == 0) {
				pthread_mutex_lock(&c->lock);
				stream_wait(c, &st, 2, &deadline);
				pthread_mutex_unlock(&c->lock);
			}
		} else if (r != -ENOTCONN && !over) {
			/* Too big, or too slow: abort it (best effort). */
			stream_send(c, gen, prog, proc, st.serial, VRPC_ERROR,
				    &deadline);
		}
		if (r == -EFBIG)
			sock_error(ret_error, r, "%s: the stream of call %d "
				  "exceeds %zu bytes", c->uri->name, proc, max);
		else if (r == -ETIMEDOUT)
			sock_error(ret_error, r, "%s: libvirtd did not send the "
				  "data in time", c->uri->name);
		else if (r < 0 && st.msg)
			sock_error(ret_error, r, "%s", st.msg);
		else if (r < 0)
			sock_error(ret_error, r, "%s: stream of call %d failed",
				  c->uri->name, proc);
	}

	stream_unlink(c, &st);
	pthread_cond_destroy(&st.cond);
	free(st.msg);
	if (r < 0) {
		if (decoded)
			xdr_free(ret_fn, ret);
		free(st.data);
		return r;
	}
	*ret_data = st.data;
	*ret_len = st.len;
	return 0;
}


/* ---- streams both ways ---- */

struct vrpc_stream {
	struct vrpc *c;
	uint64_t gen;     /* the connection it lives on */
	uint32_t prog;
	int32_t proc;
	struct vstream st;
};

int vrpc_stream_open(struct vrpc *c, uint32_t prog, int32_t proc,
		     xdrproc_t args_fn, const void *args, vrpc_stream_fn fn,
		     void *userdata, struct vrpc_stream **ret,
		     char **ret_error)
{
	struct timespec deadline = sock_deadline(c->timeout_ms);
	struct vrpc_stream *s = calloc(1, sizeof(*s));
	uint8_t *pkt = NULL, *reply = NULL;
	size_t size, rsize;
	int r;

	if (!s)
		return sock_error(ret_error, -ENOMEM, "out of memory");
	s->c = c;
	s->prog = prog;
	s->proc = proc;
	s->st.fn = fn;
	s->st.ud = userdata;
	sock_cond_init(&s->st.cond);
	r = vrpc_ensure_connected(c, &deadline, &s->gen, ret_error);
	if (r == 0) {
		r = vrpc_call_encode(prog, proc, 0, args_fn, args, &pkt, &size);
		if (r < 0)
			sock_error(ret_error, r,
				  "cannot encode the arguments of call %d", proc);
	}
	if (r == 0) {
		r = vrpc_exchange(c, s->gen, pkt, size, &deadline, &reply,
				  &rsize, &s->st, NULL, ret_error);
		/* A void reply: nothing to decode. */
		free(reply);
		if (r < 0)
			stream_unlink(c, &s->st);
	}
	free(pkt);
	if (r < 0) {
		pthread_cond_destroy(&s->st.cond);
		free(s->st.msg);
		free(s);
		return r;
	}
	*ret = s;
	return 0;
}

/* One STREAM packet of s: status, and len bytes of payload. */
static int stream_packet(struct vrpc_stream *s, int32_t status,
			 const void *data, size_t len,
			 const struct timespec *deadline)
{
	const struct vrpc_header h = {
		.len = VRPC_HEADER_SIZE + len,
		.prog = s->prog,
		.vers = VRPC_PROTOCOL_VERSION,
		.proc = s->proc,
		.type = VRPC_STREAM,
		.serial = s->st.serial,
		.status = status,
	};
	uint8_t *pkt = malloc(VRPC_HEADER_SIZE + len);
	int r;

	if (!pkt)
		return -ENOMEM;
	vrpc_header_encode(&h, pkt);
	if (len)
		memcpy(pkt + VRPC_HEADER_SIZE, data, len);
	r = vrpc_send_packet(s->c, s->gen, pkt, VRPC_HEADER_SIZE + len,
			     deadline);
	free(pkt);
	return r;
}

int vrpc_stream_send(struct vrpc_stream *s, const void *data, size_t len,
		     char **ret_error)
{
	struct timespec deadline = sock_deadline(s->c->timeout_ms);
	const uint8_t *p = data;
	bool ended;
	int r = 0;

	pthread_mutex_lock(&s->c->lock);
	ended = s->st.ended;
	pthread_mutex_unlock(&s->c->lock);
	if (ended)
		return sock_error(ret_error, -EPIPE, "%s: the stream has ended",
				 s->c->uri->name);
	while (r == 0 && len > 0) {
		size_t n = len < VRPC_STREAM_CHUNK ? len : VRPC_STREAM_CHUNK;

		r = stream_packet(s, VRPC_CONTINUE, p, n, &deadline);
		p += n;
		len -= n;
	}
	if (r == -ETIMEDOUT)
		sock_error(ret_error, r, "%s: libvirtd did not take the data "
			  "in time", s->c->uri->name);
	else if (r < 0)
		sock_error(ret_error, r, "%s: cannot send on the stream",
			  s->c->uri->name);
	return r;
}

struct vrpc_stream *vrpc_stream_close(struct vrpc_stream *s)
{
	struct timespec deadline;
	bool ended;

	if (!s)
		return NULL;
	stream_unlink(s->c, &s->st);
	pthread_mutex_lock(&s->c->lock);
	ended = s->st.ended;
	pthread_mutex_unlock(&s->c->lock);
	if (!ended) {
		/* Abort, as libvirt's client does, so the daemon frees its
		 * side and the console is free for the next client. */
		deadline = sock_deadline(s->c->timeout_ms);
		stream_packet(s, VRPC_ERROR, NULL, 0, &deadline);
	}
	pthread_cond_destroy(&s->st.cond);
	free(s->st.msg);
	free(s);
	return NULL;
}
