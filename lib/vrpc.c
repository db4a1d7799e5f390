/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libvirt RPC client: the connection and its handshake, the reader thread
 * with keepalive, the table of pending calls, reconnecting and replaying
 * persistent calls. URIs are vrpc-uri.c's, transports vrpc-transport.c's,
 * streams vrpc-stream.c's. See vrpc.h for the contract and vrpc-client.h
 * for the locking.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sock.h"
#include "vrpc-client.h"
#include "vrpc-sasl.h"

#define VRPC_TIMEOUT_MS_DEFAULT 5000
#define VRPC_HOLD_MS_MIN 500
#define VRPC_HOLD_MS_MAX 8000

/* ---- writing ---- */

int vrpc_send_packet(struct vrpc *c, uint64_t gen, const uint8_t *pkt,
		       size_t size, const struct timespec *deadline)
{
	struct vrpc_sasl *sasl;
	int r, fd;

	r = sock_lock_until(&c->wlock, deadline);
	if (r)
		return r;
	pthread_mutex_lock(&c->lock);
	fd = c->gen == gen && c->alive ? c->link.fd : -1;
	sasl = c->sasl;
	pthread_mutex_unlock(&c->lock);
	if (fd < 0) {
		r = -ENOTCONN;
	} else if (!sasl) {
		r = sock_write_all(fd, pkt, size, deadline, NULL);
	} else {
		/* The SASL security layer: each chunk encoded on its own. */
		for (size_t off = 0, n; r == 0 && off < size; off += n) {
			const uint8_t *out;
			size_t outlen;

			n = size - off;
			if (n > vrpc_sasl_max_chunk(sasl))
				n = vrpc_sasl_max_chunk(sasl);
			r = vrpc_sasl_encode(sasl, pkt + off, n, &out, &outlen);
			if (r == 0)
				r = sock_write_all(fd, out, outlen, deadline,
						   NULL);
		}
	}
	pthread_mutex_unlock(&c->wlock);
	return r;
}

/* ---- the reader thread ---- */

struct reader_args {
	struct vrpc *c;
	int fd;
	uint64_t gen;
};

/*
 * Reads exactly size bytes. Waits without limit, except that once the server
 * has pinged, VRPC_KEEPALIVE_DEAD_MS of silence counts as a dead peer.
 * Through the SASL security layer as soon as the handshake set it up (it
 * does so before it sends the first packet that the daemon answers encoded).
 */
static int read_all(struct vrpc *c, int fd, uint8_t *buf, size_t size,
		    bool *pinged, int64_t *last_rx_ms)
{
	size_t off = 0;

	while (off < size) {
		struct vrpc_sasl *sasl = __atomic_load_n(&c->sasl,
							 __ATOMIC_ACQUIRE);
		ssize_t n = sasl ? vrpc_sasl_recv(sasl, fd, buf + off,
						  size - off) :
				   recv(fd, buf + off, size - off,
					MSG_DONTWAIT);

		if (n > 0) {
			off += n;
			*last_rx_ms = sock_now_ms();
			continue;
		}
		if (n == 0)
			return -ENOTCONN;
		if (errno == EINTR)
			continue;
		if (errno == EPROTO)
			return -EPROTO;
		if (errno != EAGAIN)
			return -ENOTCONN;

		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int ms = -1;

		if (*pinged) {
			int64_t left = *last_rx_ms + VRPC_KEEPALIVE_DEAD_MS -
				       sock_now_ms();

			if (left <= 0)
				return -ETIMEDOUT;
			ms = (int)left;
		}
		if (poll(&pfd, 1, ms) < 0 && errno != EINTR)
			return -errno;
	}
	return 0;
}

static void answer_ping(struct vrpc *c, uint64_t gen)
{
	const struct vrpc_header h = {
		.len = VRPC_HEADER_SIZE,
		.prog = VRPC_PROGRAM_KEEPALIVE,
		.vers = VRPC_PROTOCOL_VERSION,
		.proc = VRPC_KEEPALIVE_PROC_PONG,
		.type = VRPC_MESSAGE,
		.serial = 0,
		.status = VRPC_OK,
	};
	uint8_t pong[VRPC_HEADER_SIZE];
	struct timespec d = sock_deadline(c->timeout_ms);

	vrpc_header_encode(&h, pong);
	vrpc_send_packet(c, gen, pong, sizeof(pong), &d);
}

/* Hands a REPLY to its waiter; takes pkt. A reply nobody waits for (the
 * caller timed out) is dropped. */
static void route_reply(struct vrpc *c, const struct vrpc_header *h,
			uint8_t *pkt)
{
	struct pending **pp, *p = NULL;
	vrpc_late_fn late;
	int code = 0;
	char *msg = NULL;

	pthread_mutex_lock(&c->lock);
	for (pp = &c->pending; *pp; pp = &(*pp)->next) {
		if ((*pp)->serial == h->serial) {
			p = *pp;
			*pp = p->next;
			break;
		}
	}
	if (p) {
		p->pkt = pkt;
		p->size = h->len;
		p->done = true;
		pthread_cond_signal(&p->cond);
	}
	late = c->late_fn;
	pthread_mutex_unlock(&c->lock);
	if (p)
		return;
	if (late) {
		if (h->status == VRPC_ERROR &&
		    vrpc_error_decode(pkt + VRPC_HEADER_SIZE,
				      h->len - VRPC_HEADER_SIZE, &code,
				      &msg) < 0)
			code = -1;
		free(msg);
		late(c->event_ud, h->serial, code);
	}
	free(pkt);
}

/* Caller holds c->lock. A packet of a stream both ways: to its function. */
static void stream_deliver_locked(const struct vrpc_header *h,
				  struct vstream *st, const uint8_t *payload,
				  size_t size)
{
	int code = 0, err = 0;
	char *msg = NULL;

	if (st->ended)
		return;
	if (h->status == VRPC_CONTINUE && size > 0) {
		st->fn(st->ud, payload, size, 0, NULL);
		return;
	}
	if (h->status == VRPC_ERROR) {
		if (vrpc_error_decode(payload, size, &code, &msg) < 0)
			err = -EPROTO;
		else
			err = vrpc_errno(h->prog, h->proc, code);
		free(st->msg);
		st->msg = msg;
	}
	/* An empty CONTINUE (end of file), an OK or an ERROR: the end. */
	st->ended = true;
	st->err = err;
	st->fn(st->ud, NULL, 0, err, st->msg);
}

/*
 * Hands a STREAM packet to the download with its serial; takes pkt. Data
 * beyond the stream's max is dropped and fails the download.
 */
static void route_stream(struct vrpc *c, const struct vrpc_header *h,
			 uint8_t *pkt)
{
	const uint8_t *payload = pkt + VRPC_HEADER_SIZE;
	size_t size = h->len - VRPC_HEADER_SIZE;
	struct vstream *st;

	pthread_mutex_lock(&c->lock);
	for (st = c->streams; st && st->serial != h->serial; st = st->next)
		;
	if (!st) {
		/* Nobody downloads (anymore): drop it. */
	} else if (st->fn) {
		stream_deliver_locked(h, st, payload, size);
	} else if (h->status == VRPC_CONTINUE) {
		if (st->err) {
			/* failed already: drain */
		} else if (size == 0) {
			/* libvirtd 9.0 ends the data with an empty CONTINUE */
			if (st->oks < 1)
				st->oks = 1;
			pthread_cond_signal(&st->cond);
		} else if (size > st->max - st->len) {
			st->err = -EFBIG;
			pthread_cond_signal(&st->cond);
		} else if (size > 0) {
			uint8_t *n = realloc(st->data, st->len + size);

			if (!n) {
				st->err = -ENOMEM;
			} else {
				memcpy(n + st->len, payload, size);
				st->data = n;
				st->len += size;
			}
		}
	} else if (h->status == VRPC_OK) {
		st->oks = 2;
		pthread_cond_signal(&st->cond);
	} else {
		int code = 0;
		char *msg = NULL;

		if (vrpc_error_decode(payload, size, &code, &msg) < 0)
			st->err = -EPROTO;
		else if (!st->err)
			st->err = vrpc_errno(h->prog, h->proc, code);
		free(st->msg);
		st->msg = msg;
		st->oks = 2; /* nothing follows an error */
		pthread_cond_signal(&st->cond);
	}
	pthread_mutex_unlock(&c->lock);
	free(pkt);
}

/* Caller holds c->lock. The connection is over: every stream fails. */
static void streams_fail_locked(struct vrpc *c)
{
	for (struct vstream *st = c->streams; st; st = st->next) {
		if (!st->err)
			st->err = -ENOTCONN;
		if (st->fn && !st->ended) {
			st->ended = true;
			st->fn(st->ud, NULL, 0, -ENOTCONN, NULL);
		}
		pthread_cond_signal(&st->cond);
	}
}

/* What a packet's buffer starts with; it doubles as the bytes arrive. */
#define VRPC_READ_STEP (64u << 10)

/*
 * Reads the rest of a packet of len bytes whose length word is lenbuf into
 * a new buffer (*ret). The buffer grows with what arrives, so a peer that
 * announces a large packet and sends little of it costs what it sent.
 */
static int read_packet(struct vrpc *c, int fd, const uint8_t *lenbuf,
		       uint32_t len, uint8_t **ret, bool *pinged,
		       int64_t *last_rx_ms)
{
	size_t cap = len < VRPC_READ_STEP ? len : VRPC_READ_STEP;
	size_t have = VRPC_LEN_SIZE;
	uint8_t *pkt = malloc(cap);
	int r = 0;

	if (!pkt)
		return -ENOMEM;
	memcpy(pkt, lenbuf, VRPC_LEN_SIZE);
	while (r == 0 && have < len) {
		if (have == cap) {
			uint8_t *n;

			cap = cap < len / 2 ? cap * 2 : len;
			if (!(n = realloc(pkt, cap))) {
				r = -ENOMEM;
				break;
			}
			pkt = n;
		}
		r = read_all(c, fd, pkt + have, cap - have, pinged,
			     last_rx_ms);
		have = cap;
	}
	if (r < 0) {
		free(pkt);
		return r;
	}
	*ret = pkt;
	return 0;
}

static void *reader_main(void *arg)
{
	struct reader_args a = *(struct reader_args *)arg;
	struct vrpc *c = a.c;
	int64_t last_rx = sock_now_ms();
	bool pinged = false, was_up, closing;
	int r;

	free(arg);
	for (;;) {
		uint8_t lenbuf[VRPC_LEN_SIZE];
		struct vrpc_header h;
		uint32_t len;
		uint8_t *pkt;

		r = read_all(c, a.fd, lenbuf, sizeof(lenbuf), &pinged, &last_rx);
		if (r < 0)
			break;
		r = vrpc_len_decode(lenbuf, &len);
		if (r < 0)
			break;
		r = read_packet(c, a.fd, lenbuf, len, &pkt, &pinged, &last_rx);
		if (r < 0)
			break;
		r = vrpc_header_decode(pkt, len, &h);
		if (r < 0) {
			free(pkt);
			break;
		}
		if (h.prog == VRPC_PROGRAM_KEEPALIVE) {
			if (h.proc == VRPC_KEEPALIVE_PROC_PING) {
				pinged = true;
				answer_ping(c, a.gen);
			}
			free(pkt);
		} else if (h.type == VRPC_REPLY) {
			route_reply(c, &h, pkt);
		} else if (h.type == VRPC_MESSAGE) {
			if (c->event_fn)
				c->event_fn(c->event_ud, &h,
					    pkt + VRPC_HEADER_SIZE,
					    len - VRPC_HEADER_SIZE);
			free(pkt);
		} else if (h.type == VRPC_STREAM) {
			route_stream(c, &h, pkt);
		} else {
			/* fd passing: never asked for. */
			free(pkt);
		}
	}

	/* The connection is over: fail every waiter at once. */
	pthread_mutex_lock(&c->lock);
	was_up = c->gen == a.gen && c->up;
	closing = c->closing;
	if (r == -EPROTO || r == -EMSGSIZE) {
		c->hold_ms = c->hold_ms ? c->hold_ms * 2 : VRPC_HOLD_MS_MIN;
		if (c->hold_ms > VRPC_HOLD_MS_MAX)
			c->hold_ms = VRPC_HOLD_MS_MAX;
		c->hold_until = sock_deadline(c->hold_ms);
	}
	if (c->gen == a.gen) {
		c->alive = false;
		c->up = false;
	}
	while (c->pending) {
		struct pending *p = c->pending;

		c->pending = p->next;
		/* A length word out of range (-EMSGSIZE from the codec) is
		 * the peer breaking the protocol like any other. */
		p->err = r == -EPROTO || r == -EMSGSIZE ? -EPROTO : -ENOTCONN;
		p->done = true;
		pthread_cond_signal(&p->cond);
	}
	streams_fail_locked(c);
	pthread_mutex_unlock(&c->lock);
	/* Wake the peer too, so that it notices a protocol error at once. */
	shutdown(a.fd, SHUT_RDWR);
	if (was_up && !closing && c->event_fn)
		c->event_fn(c->event_ud, NULL, NULL, 0);
	return NULL;
}

/* ---- calls ---- */

static void put_serial(uint8_t *pkt, uint32_t serial)
{
	pkt[20] = serial >> 24;
	pkt[21] = serial >> 16;
	pkt[22] = serial >> 8;
	pkt[23] = serial;
}

int vrpc_exchange(struct vrpc *c, uint64_t gen, uint8_t *pkt, size_t size,
		  const struct timespec *deadline, uint8_t **ret_pkt,
		  size_t *ret_size, struct vstream *st, int64_t *ret_late,
		  char **ret_error)
{
	struct pending p = { .done = false };
	struct vrpc_header h;
	int r = 0;

	sock_cond_init(&p.cond);

	pthread_mutex_lock(&c->lock);
	if (c->gen != gen || !c->alive) {
		pthread_mutex_unlock(&c->lock);
		pthread_cond_destroy(&p.cond);
		return sock_error(ret_error, -ENOTCONN,
				 "%s: connection to libvirtd lost", c->uri->name);
	}
	p.serial = c->serial++;
	put_serial(pkt, p.serial);
	p.next = c->pending;
	c->pending = &p;
	if (st) {
		st->serial = p.serial;
		st->next = c->streams;
		c->streams = st;
	}
	pthread_mutex_unlock(&c->lock);

	r = vrpc_send_packet(c, gen, pkt, size, deadline);

	pthread_mutex_lock(&c->lock);
	while (r == 0 && !p.done) {
		int e = pthread_cond_timedwait(&p.cond, &c->lock, deadline);

		if (e == ETIMEDOUT && !p.done) {
			r = -ETIMEDOUT;
			if (ret_late)
				*ret_late = p.serial;
		}
	}
	if (!p.done) {
		/* Forget our serial: a late reply finds nobody. */
		for (struct pending **pp = &c->pending; *pp; pp = &(*pp)->next) {
			if (*pp == &p) {
				*pp = p.next;
				break;
			}
		}
	} else if (r == 0) {
		r = p.err;
	} else {
		/* The reply came although sending said otherwise. */
		free(p.pkt);
		p.pkt = NULL;
	}
	pthread_mutex_unlock(&c->lock);
	pthread_cond_destroy(&p.cond);

	if (r < 0) {
		if (r == -ETIMEDOUT)
			return sock_error(ret_error, r,
					 "%s: libvirtd did not answer in time",
					 c->uri->name);
		if (r == -EPROTO)
			return sock_error(ret_error, r,
					 "%s: libvirtd broke the protocol",
					 c->uri->name);
		return sock_error(ret_error, r, "%s: connection to libvirtd lost",
				 c->uri->name);
	}

	vrpc_header_decode(p.pkt, p.size, &h);
	if (h.status == VRPC_ERROR) {
		struct vrpc_header call;
		char *msg = NULL;
		int code;

		r = vrpc_error_decode(p.pkt + VRPC_HEADER_SIZE,
				      p.size - VRPC_HEADER_SIZE, &code, &msg);
		free(p.pkt);
		if (r < 0)
			return sock_error(ret_error, r,
					 "%s: undecodable error reply",
					 c->uri->name);
		/* Mapped by what we called, whatever the reply claims. */
		vrpc_header_decode(pkt, size, &call);
		r = vrpc_errno(call.prog, call.proc, code);
		if (ret_error) {
			free(*ret_error);
			*ret_error = msg;
		} else {
			free(msg);
		}
		return r;
	}
	if (h.status != VRPC_OK) {
		free(p.pkt);
		return sock_error(ret_error, -EPROTO,
				 "%s: unexpected reply status %d", c->uri->name,
				 h.status);
	}
	*ret_pkt = p.pkt;
	*ret_size = p.size;
	return 0;
}

/* One call on connection gen, encoded and decoded. */
static int call_on(struct vrpc *c, uint64_t gen, uint32_t prog, int32_t proc,
		   xdrproc_t args_fn, const void *args, xdrproc_t ret_fn,
		   void *ret, const struct timespec *deadline,
		   int64_t *ret_late, char **ret_error)
{
	uint8_t *pkt = NULL, *reply = NULL;
	size_t size, rsize;
	int r;

	r = vrpc_call_encode(prog, proc, 0, args_fn, args, &pkt, &size);
	if (r < 0)
		return sock_error(ret_error, r,
				 "cannot encode the arguments of call %d", proc);
	r = vrpc_exchange(c, gen, pkt, size, deadline, &reply, &rsize, NULL,
			    ret_late, ret_error);
	free(pkt);
	if (r < 0)
		return r;
	if (ret_fn)
		r = vrpc_payload_decode(reply + VRPC_HEADER_SIZE,
					rsize - VRPC_HEADER_SIZE, ret_fn, ret);
	else if (rsize != VRPC_HEADER_SIZE)
		r = -EPROTO;
	free(reply);
	if (r < 0)
		return sock_error(ret_error, r,
				 "%s: undecodable reply to call %d",
				 c->uri->name, proc);
	return 0;
}

/* vrpc_sasl_auth()'s calls: call_on() on the connection being made. */
struct sasl_call {
	struct vrpc *c;
	uint64_t gen;
	const struct timespec *deadline;
};

static int sasl_call(void *userdata, int32_t proc, xdrproc_t args_fn,
		     const void *args, xdrproc_t ret_fn, void *ret,
		     char **ret_error)
{
	struct sasl_call *sc = userdata;

	return call_on(sc->c, sc->gen, VRPC_PROGRAM_REMOTE, proc, args_fn,
		       args, ret_fn, ret, sc->deadline, NULL, ret_error);
}

static int handshake(struct vrpc *c, uint64_t gen,
		     const struct timespec *deadline, char **ret_error)
{
	vrpc_auth_list_ret auth = { 0 };
	vrpc_connect_supports_feature_args fa = { VRPC_FEATURE_KEEPALIVE };
	vrpc_connect_supports_feature_ret fr = { 0 };
	vrpc_nonnull_string name = c->uri->name;
	vrpc_connect_open_args oa = { .name = &name, .flags = 0 };
	bool none = false, polkit = false, sasl = false;
	struct persist *p;
	int r;

	/* Before AUTH_LIST every call fails, even for root. */
	r = call_on(c, gen, VRPC_PROGRAM_REMOTE, VRPC_PROC_AUTH_LIST, NULL,
		    NULL, VRPC_XDR(xdr_vrpc_auth_list_ret), &auth, deadline,
		    NULL, ret_error);
	if (r < 0)
		return r;
	for (unsigned i = 0; i < auth.types.types_len; i++) {
		none |= auth.types.types_val[i] == VRPC_AUTH_NONE;
		polkit |= auth.types.types_val[i] == VRPC_AUTH_POLKIT;
		sasl |= auth.types.types_val[i] == VRPC_AUTH_SASL;
	}
	xdr_free(VRPC_XDR(xdr_vrpc_auth_list_ret), &auth);
	if (!none && polkit) {
		vrpc_auth_polkit_ret pr = { 0 };

		r = call_on(c, gen, VRPC_PROGRAM_REMOTE, VRPC_PROC_AUTH_POLKIT,
			    NULL, NULL, VRPC_XDR(xdr_vrpc_auth_polkit_ret),
			    &pr, deadline, NULL, ret_error);
		if (r == -EACCES)
			return sock_error(ret_error, r, "%s: polkit "
					  "authentication failed (run as root)",
					  c->uri->name);
		if (r < 0)
			return r;
	} else if (!none && sasl) {
		struct sasl_call sc = { c, gen, deadline };
		struct vrpc_sasl *layer = NULL;
		int fd;

		pthread_mutex_lock(&c->lock);
		fd = c->link.fd;
		pthread_mutex_unlock(&c->lock);
		r = vrpc_sasl_auth(c->uri, fd, sasl_call, &sc, &layer,
				   ret_error);
		if (r < 0)
			return r;
		/* From now on both ways through the layer; nothing is in
		 * flight, and the daemon encodes only what follows. */
		pthread_mutex_lock(&c->lock);
		__atomic_store_n(&c->sasl, layer, __ATOMIC_RELEASE);
		pthread_mutex_unlock(&c->lock);
	} else if (!none) {
		return sock_error(ret_error, -EACCES,
				 "%s: libvirtd offers no authentication "
				 "method we speak", c->uri->name);
	}

	r = call_on(c, gen, VRPC_PROGRAM_REMOTE,
		    VRPC_PROC_CONNECT_SUPPORTS_FEATURE,
		    VRPC_XDR(xdr_vrpc_connect_supports_feature_args), &fa,
		    VRPC_XDR(xdr_vrpc_connect_supports_feature_ret), &fr,
		    deadline, NULL, ret_error);
	if (r < 0)
		return r;

	r = call_on(c, gen, VRPC_PROGRAM_REMOTE, VRPC_PROC_CONNECT_OPEN,
		    VRPC_XDR(xdr_vrpc_connect_open_args), &oa, NULL, NULL,
		    deadline, NULL, ret_error);
	if (r < 0)
		return r;

	/* The list only grows, and only while no connect runs. */
	pthread_mutex_lock(&c->lock);
	p = c->persist;
	pthread_mutex_unlock(&c->lock);
	for (; p; p = p->next) {
		uint8_t *reply = NULL;
		size_t rsize;

		r = vrpc_exchange(c, gen, p->pkt, p->size, deadline, &reply,
				  &rsize, NULL, NULL, ret_error);
		if (r < 0)
			return r;
		free(reply);
	}
	return 0;
}

/* Drops the current socket, if any, and waits for its reader to finish. */
static void teardown(struct vrpc *c)
{
	pthread_t t;
	bool join;

	pthread_mutex_lock(&c->lock);
	if (c->link.fd >= 0)
		shutdown(c->link.fd, SHUT_RDWR);
	join = c->have_reader;
	t = c->reader;
	c->have_reader = false;
	pthread_mutex_unlock(&c->lock);
	if (join)
		pthread_join(t, NULL);

	pthread_mutex_lock(&c->wlock);
	pthread_mutex_lock(&c->lock);
	vrpc_transport_close(&c->link);
	c->sasl = vrpc_sasl_free(c->sasl);
	c->alive = false;
	c->up = false;
	pthread_mutex_unlock(&c->lock);
	pthread_mutex_unlock(&c->wlock);
}

/* Makes a new connection. Called only by the thread that set connecting. */
static int reconnect(struct vrpc *c, const struct timespec *deadline,
		     uint64_t *ret_gen, char **ret_error)
{
	struct reader_args *ra;
	pthread_attr_t attr;
	uint64_t gen;
	struct vrpc_link link;
	char *why = NULL;
	int r;

	teardown(c);
	r = vrpc_transport_connect(c->uri, deadline, &link, &why);
	if (r < 0) {
		sock_error(ret_error, r, "cannot connect to libvirtd: %s",
			   why ? why : strerror(-r));
		free(why);
		return r;
	}
	ra = malloc(sizeof(*ra));
	if (!ra) {
		vrpc_transport_close(&link);
		return -ENOMEM;
	}
	pthread_mutex_lock(&c->lock);
	c->link = link;
	gen = ++c->gen;
	*ra = (struct reader_args){ c, link.fd, gen };
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, VRPC_READER_STACK_SIZE);
	r = -pthread_create(&c->reader, &attr, reader_main, ra);
	pthread_attr_destroy(&attr);
	if (r == 0) {
		c->have_reader = true;
		c->alive = true;
	}
	pthread_mutex_unlock(&c->lock);
	if (r < 0) {
		free(ra);
		teardown(c);
		return sock_error(ret_error, r, "cannot start the reader thread");
	}

	r = handshake(c, gen, deadline, ret_error);
	if (r < 0) /* link is c->link until the next teardown, ours to make */
		r = vrpc_transport_explain(&link, r, deadline, ret_error);
	pthread_mutex_lock(&c->lock);
	if (r == 0 && !(c->gen == gen && c->alive))
		r = sock_error(ret_error, -ENOTCONN,
			      "%s: connection to libvirtd lost",
			      c->uri->name);
	if (r == 0)
		c->up = true;
	else if (c->gen == gen && c->link.fd >= 0)
		shutdown(c->link.fd, SHUT_RDWR);
	pthread_mutex_unlock(&c->lock);
	if (r == 0)
		*ret_gen = gen;
	return r;
}

int vrpc_ensure_connected(struct vrpc *c, const struct timespec *deadline,
			    uint64_t *ret_gen, char **ret_error)
{
	int r;

	pthread_mutex_lock(&c->lock);
	for (;;) {
		if (c->up) {
			*ret_gen = c->gen;
			pthread_mutex_unlock(&c->lock);
			return 0;
		}
		if (!c->connecting && sock_ms_left(&c->hold_until) > 0) {
			/* Every caller would reconnect, meet the same broken
			 * peer and make the next caller do it again. */
			int ms = sock_ms_left(&c->hold_until);

			pthread_mutex_unlock(&c->lock);
			return sock_error(ret_error, -EPROTO,
					 "%s: libvirtd broke the protocol; "
					 "next try in %d ms", c->uri->name, ms);
		}
		if (!c->connecting)
			break;
		if (pthread_cond_timedwait(&c->cond, &c->lock, deadline) ==
		    ETIMEDOUT) {
			pthread_mutex_unlock(&c->lock);
			return sock_error(ret_error, -ETIMEDOUT,
					 "%s: timed out connecting to libvirtd",
					 c->uri->name);
		}
	}
	c->connecting = true;
	pthread_mutex_unlock(&c->lock);

	r = reconnect(c, deadline, ret_gen, ret_error);

	pthread_mutex_lock(&c->lock);
	c->connecting = false;
	pthread_cond_broadcast(&c->cond);
	pthread_mutex_unlock(&c->lock);
	return r;
}

/* A call (connecting included) within timeout_ms. */
static int call_within(struct vrpc *c, int timeout_ms, uint32_t prog,
		       int32_t proc, xdrproc_t args_fn, const void *args,
		       xdrproc_t ret_fn, void *ret, int64_t *ret_late,
		       char **ret_error)
{
	struct timespec deadline = sock_deadline(timeout_ms);
	uint64_t gen;
	int r;

	r = vrpc_ensure_connected(c, &deadline, &gen, ret_error);
	if (r < 0)
		return r;
	return call_on(c, gen, prog, proc, args_fn, args, ret_fn, ret,
		       &deadline, ret_late, ret_error);
}

int vrpc_call_tracked(struct vrpc *c, uint32_t prog, int32_t proc,
		      xdrproc_t args_fn, const void *args, xdrproc_t ret_fn,
		      void *ret, int64_t *ret_late, char **ret_error)
{
	return call_within(c, c->timeout_ms, prog, proc, args_fn, args,
			   ret_fn, ret, ret_late, ret_error);
}

int vrpc_call(struct vrpc *c, uint32_t prog, int32_t proc, xdrproc_t args_fn,
	      const void *args, xdrproc_t ret_fn, void *ret, char **ret_error)
{
	return vrpc_call_tracked(c, prog, proc, args_fn, args, ret_fn, ret,
				 NULL, ret_error);
}

int vrpc_call_timeout(struct vrpc *c, int timeout_ms, uint32_t prog,
		      int32_t proc, xdrproc_t args_fn, const void *args,
		      xdrproc_t ret_fn, void *ret, char **ret_error)
{
	return call_within(c, timeout_ms > 0 ? timeout_ms : c->timeout_ms,
			   prog, proc, args_fn, args, ret_fn, ret, NULL,
			   ret_error);
}

void vrpc_set_late_handler(struct vrpc *c, vrpc_late_fn fn)
{
	pthread_mutex_lock(&c->lock);
	c->late_fn = fn;
	pthread_mutex_unlock(&c->lock);
}

int vrpc_call_persistent(struct vrpc *c, uint32_t prog, int32_t proc,
			 xdrproc_t args_fn, const void *args,
			 char **ret_error)
{
	struct timespec deadline = sock_deadline(c->timeout_ms);
	struct persist *p;
	int r;

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	r = vrpc_call_encode(prog, proc, 0, args_fn, args, &p->pkt, &p->size);
	if (r < 0) {
		free(p);
		return sock_error(ret_error, r,
				 "cannot encode the arguments of call %d", proc);
	}
	/*
	 * Record the call only if the connection it succeeded on is still the
	 * current one: a reconnect that slipped in between replayed the list
	 * without it, so make it again on the new connection.
	 */
	for (;;) {
		uint8_t *reply = NULL;
		size_t rsize;
		uint64_t gen;
		bool same;

		r = vrpc_ensure_connected(c, &deadline, &gen, ret_error);
		if (r == 0)
			r = vrpc_exchange(c, gen, p->pkt, p->size, &deadline,
					  &reply, &rsize, NULL, NULL,
					  ret_error);
		if (r < 0) {
			free(p->pkt);
			free(p);
			return r;
		}
		free(reply);
		pthread_mutex_lock(&c->lock);
		same = c->gen == gen && !c->connecting;
		if (same) {
			*c->persist_tail = p;
			c->persist_tail = &p->next;
		}
		pthread_mutex_unlock(&c->lock);
		if (same)
			return 0;
	}
}

void vrpc_disconnect(struct vrpc *c)
{
	pthread_mutex_lock(&c->lock);
	if (c->link.fd >= 0 && c->alive)
		shutdown(c->link.fd, SHUT_RDWR);
	pthread_mutex_unlock(&c->lock);
}

int vrpc_open(const char *uri, int timeout_ms, vrpc_event_fn event_fn,
	      void *userdata, struct vrpc **ret, char **ret_error)
{
	struct timespec deadline;
	struct vrpc *c;
	uint64_t gen;
	int r;

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	r = vrpc_uri_parse(uri, &c->uri, ret_error);
	if (r < 0) {
		free(c);
		return r;
	}
	c->timeout_ms = timeout_ms > 0 ? timeout_ms : VRPC_TIMEOUT_MS_DEFAULT;
	c->event_fn = event_fn;
	c->event_ud = userdata;
	c->link = VRPC_LINK_NONE;
	c->persist_tail = &c->persist;
	pthread_mutex_init(&c->lock, NULL);
	pthread_mutex_init(&c->wlock, NULL);
	sock_cond_init(&c->cond);

	deadline = sock_deadline(c->timeout_ms);
	r = vrpc_ensure_connected(c, &deadline, &gen, ret_error);
	if (r < 0) {
		vrpc_close(c);
		return r;
	}
	*ret = c;
	return 0;
}

struct vrpc *vrpc_close(struct vrpc *c)
{
	bool up;

	if (!c)
		return NULL;
	/* Closing first: the peer may hang up as soon as it answered CLOSE,
	 * and that is not a lost connection. */
	pthread_mutex_lock(&c->lock);
	up = c->up;
	c->closing = true;
	pthread_mutex_unlock(&c->lock);
	if (up) {
		struct timespec d = sock_deadline(c->timeout_ms);

		call_on(c, c->gen, VRPC_PROGRAM_REMOTE, VRPC_PROC_CONNECT_CLOSE,
			NULL, NULL, NULL, NULL, &d, NULL, NULL);
	}
	teardown(c);
	while (c->persist) {
		struct persist *p = c->persist;

		c->persist = p->next;
		free(p->pkt);
		free(p);
	}
	pthread_cond_destroy(&c->cond);
	pthread_mutex_destroy(&c->lock);
	pthread_mutex_destroy(&c->wlock);
	vrpc_uri_free(c->uri);
	free(c);
	return NULL;
}
