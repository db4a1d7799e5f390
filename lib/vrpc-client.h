/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The libvirt client's insides, shared by vrpc.c (the connection, the reader
 * thread with keepalive, calls, and queueing stream packets) and
 * vrpc-stream.c (streams, which call into the client only, never the other
 * way); nothing else includes this.
 *
 * Locking: `lock` guards the connection state, the pending list, the
 * streams and the persistent calls. `wlock` serialises writers so packets
 * never interleave; it is taken before `lock`, with the caller's deadline.
 * The link is closed only by the thread that connects or by vrpc_close(),
 * after joining the reader and under wlock, so a descriptor number is never
 * reused while someone still writes to it.
 */

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "vrpc-transport.h"
#include "vrpc.h"

struct pending {
	struct pending *next;
	uint32_t serial;
	bool done;
	int err;       /* the connection failed: -ENOTCONN, -EPROTO, ... */
	uint8_t *pkt;  /* the whole reply packet, when err == 0 */
	size_t size;
	pthread_cond_t cond;
};

/*
 * A stream opened by a call with this serial: a download (server to client,
 * collected into data) or, with fn, a stream both ways whose data goes to fn
 * as it comes (struct vrpc_stream, vrpc-stream.c).
 */
struct vstream {
	struct vstream *next;
	uint32_t serial;
	vrpc_stream_fn fn; /* called under c->lock on the reader thread */
	void *ud;
	bool ended;        /* fn was told the end */
	uint8_t *data;
	size_t len, max;
	int err;       /* -EFBIG past max, an ERROR packet's errno, -ENOTCONN */
	char *msg;     /* the ERROR packet's message */
	int oks;       /* 1: end of data (an empty CONTINUE); 2: an OK came
			* (libvirtd's confirmation of our finish or abort) */
	pthread_cond_t cond;
};

struct persist {
	struct persist *next;
	uint8_t *pkt; /* the encoded CALL; its serial is patched on replay */
	size_t size;
};

struct vrpc {
	struct vrpc_uri *uri;
	int timeout_ms;
	vrpc_event_fn event_fn; /* immutable after vrpc_open() */
	void *event_ud;
	vrpc_late_fn late_fn;   /* guarded by lock */

	pthread_mutex_t wlock;

	pthread_mutex_t lock;
	pthread_cond_t cond;  /* `connecting` went false */
	struct vrpc_link link; /* fd -1 when none */
	uint64_t gen;         /* bumped by every new socket */
	bool alive;           /* the reader runs and the socket works */
	bool up;              /* alive and the handshake completed */
	bool connecting;      /* a thread is (re)connecting */
	bool closing;
	/* After a connection the peer broke (-EPROTO), no new one before
	 * hold_until; the pause doubles with each broken connection. */
	struct timespec hold_until;
	int hold_ms;
	bool have_reader;
	pthread_t reader;
	uint32_t serial;
	struct pending *pending;
	struct persist *persist, **persist_tail;
	struct vstream *streams;  /* guarded by lock */
};

/* ---- vrpc.c ---- */

/* The generation of a connection that is up, connecting if there is none. */
int vrpc_ensure_connected(struct vrpc *c, const struct timespec *deadline,
			  uint64_t *ret_gen, char **ret_error);

/* Sends one whole packet on connection gen. */
int vrpc_send_packet(struct vrpc *c, uint64_t gen, const uint8_t *pkt,
		     size_t size, const struct timespec *deadline);

/*
 * Sends the CALL packet pkt (its serial is patched) on connection gen and
 * waits for the reply. Returns 0 and the reply packet in *ret_pkt (malloc'd),
 * or a negative errno; libvirt's ERROR replies are turned into errno here.
 * With st, st is registered under the call's serial before the call is
 * sent, so no packet of its stream can come unseen. ret_late (may be NULL):
 * the serial of a call that was sent and timed out.
 */
int vrpc_exchange(struct vrpc *c, uint64_t gen, uint8_t *pkt, size_t size,
		  const struct timespec *deadline, uint8_t **ret_pkt,
		  size_t *ret_size, struct vstream *st, int64_t *ret_late,
		  char **ret_error);
