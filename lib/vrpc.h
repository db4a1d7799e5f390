/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * libvirt RPC client: one connection to libvirtd, shared by any number of
 * threads. Internal to lib/ (XDR types cross this header); hv-libvirt.c is
 * its user.
 *
 * A struct vrpc owns at most one socket and one reader thread. Callers send
 * CALLs with their own serial and wait, each on its own condition, until the
 * reader routes the REPLY with that serial to them; several calls may be in
 * flight at once and replies may come in any order. MESSAGE packets (events)
 * go to the event handler; keepalive PINGs are answered with PONGs.
 *
 * Every call has a deadline (the timeout given to vrpc_open(), or the
 * call's own with vrpc_call_timeout(), counted on CLOCK_MONOTONIC from the
 * start of the call, connecting included). A caller that times out forgets
 * its serial; a late reply is dropped, after telling the late handler (if set) its serial: vrpc_call_tracked() gives the serial
 * of a call that timed out, so its caller can tell when the peer (or the
 * QEMU behind a per-domain call) shows a sign of life again.
 *
 * When the connection drops, every waiter gets -ENOTCONN at once and the
 * event handler is told (h == NULL). The next call reconnects: AUTH_LIST,
 * SUPPORTS_FEATURE(keepalive), CONNECT_OPEN, then it replays every call made
 * with vrpc_call_persistent() (event registrations), in order. After a
 * connection the peer broke (-EPROTO), calls fail at once with -EPROTO for a
 * while (0.5 s, doubling with each broken connection up to 8 s) instead of
 * reconnecting, so that a broken peer is not reconnected in a tight loop.
 *
 * Keepalive: we ask for it (feature 10) when the server offers it and answer
 * each PING with a PONG, so libvirtd can reap a client that froze and an idle
 * TCP connection sees traffic. Once a PING has been seen on a connection, a
 * silence of VRPC_KEEPALIVE_DEAD_MS means the peer is gone: the connection is
 * dropped as if it had closed.
 *
 * Errors are negative errno values:
 *   -EINVAL       bad URI or arguments that do not encode (nothing sent)
 *   -EOPNOTSUPP   a URI transport we do not speak (tls, ssh, ...)
 *   -ECONNREFUSED, ...  connect() failed (libvirtd not running; a missing
 *                 socket file is -ECONNREFUSED too, never -ENOENT)
 *   -ETIMEDOUT    the deadline passed (connecting or waiting for the reply)
 *   -ENOTCONN     the connection dropped while we waited
 *   -EPROTO       the peer broke the protocol (a length word out of range
 *                 included); the connection is dropped
 *   anything vrpc_errno() returns: libvirt answered with an error
 * Wherever a function takes `char **ret_error` (may be NULL), a failure
 * stores a malloc'd message there: libvirt's own text when libvirt refused.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vrpc-codec.h"
#include "vrpc-uri.h"

#define VRPC_KEEPALIVE_DEAD_MS 60000
#define VRPC_READER_STACK_SIZE (256u << 10)

/*
 * Event handler: runs on the reader thread for every MESSAGE packet except
 * keepalive (h, then its payload), and with h == NULL when an established
 * connection is lost. Everything is borrowed for the call. It must not call
 * into the same struct vrpc and must return quickly (it delays replies).
 */
typedef void (*vrpc_event_fn)(void *userdata, const struct vrpc_header *h,
			      const uint8_t *payload, size_t size);

struct vrpc;

/*
 * Parses uri and connects (handshake included). timeout_ms <= 0 means 5000.
 * event_fn may be NULL. Returns 0 and *ret or a negative errno.
 */
int vrpc_open(const char *uri, int timeout_ms, vrpc_event_fn event_fn,
	      void *userdata, struct vrpc **ret, char **ret_error);

/* Sends CONNECT_CLOSE if connected, joins the reader thread, frees. No other
 * thread may be using c. Accepts NULL; returns NULL. */
struct vrpc *vrpc_close(struct vrpc *c);

/*
 * Calls procedure proc of program prog with *args encoded by args_fn (NULL:
 * no arguments) and decodes the reply into *ret with ret_fn (NULL: a void
 * reply; ret must then be NULL). *ret must be zeroed; on success the caller
 * frees it with xdr_free(ret_fn, ret); on failure it holds nothing.
 * Reconnects first if the connection is down.
 */
int vrpc_call(struct vrpc *c, uint32_t prog, int32_t proc, xdrproc_t args_fn,
	      const void *args, xdrproc_t ret_fn, void *ret, char **ret_error);

/* vrpc_call() with a deadline of its own: timeout_ms from the start of the
 * call instead of the connection's (<= 0: the connection's). */
int vrpc_call_timeout(struct vrpc *c, int timeout_ms, uint32_t prog,
		      int32_t proc, xdrproc_t args_fn, const void *args,
		      xdrproc_t ret_fn, void *ret, char **ret_error);

/*
 * A call whose REPLY is followed by a stream of data from the daemon (e.g.
 * DOMAIN_SCREENSHOT): like vrpc_call(), then collects the STREAM packets of
 * the call's serial into *ret_data (malloc'd, *ret_len bytes) until the
 * daemon's end of stream, and finishes the stream. More than `max` bytes is
 * -EFBIG (the stream is aborted). One deadline covers the whole download.
 * ret_late (may be NULL) as for vrpc_call_tracked(), for the REPLY.
 */
int vrpc_call_download(struct vrpc *c, uint32_t prog, int32_t proc,
		       xdrproc_t args_fn, const void *args, xdrproc_t ret_fn,
		       void *ret, size_t max, uint8_t **ret_data,
		       size_t *ret_len, int64_t *ret_late, char **ret_error);

/*
 * A stream both ways opened by a call (DOMAIN_OPEN_CONSOLE): the call's
 * reply has no value; then the daemon's data goes to fn as it comes, and
 * vrpc_stream_send() sends ours. fn runs on the reader thread with the
 * client's lock held: it must return quickly and must not call into c. It is
 * called with err 0 and len > 0 for data, and once with len 0 at the end:
 * err 0 when the daemon ended the stream (end of file), the errno of its
 * ERROR packet (msg: libvirt's message, else NULL), or -ENOTCONN when the
 * connection dropped; no call follows
 * the end, nor vrpc_stream_close(). A stream does not survive a reconnection.
 */
typedef void (*vrpc_stream_fn)(void *userdata, const uint8_t *data,
			       size_t len, int err, const char *msg);
struct vrpc_stream;
int vrpc_stream_open(struct vrpc *c, uint32_t prog, int32_t proc,
		     xdrproc_t args_fn, const void *args, vrpc_stream_fn fn,
		     void *userdata, struct vrpc_stream **ret,
		     char **ret_error);
/* Sends len bytes (in packets of at most VRPC_STREAM_CHUNK), within the
 * connection's timeout. -EPIPE once the stream ended. */
#define VRPC_STREAM_CHUNK (64u << 10)
int vrpc_stream_send(struct vrpc_stream *s, const void *data, size_t len,
		     char **ret_error);
/* Aborts the stream (best effort, bounded by the timeout) and frees it;
 * fn is not called any more. Accepts NULL; returns NULL. */
struct vrpc_stream *vrpc_stream_close(struct vrpc_stream *s);

/*
 * Like vrpc_call() without a result, and the call is made again on every new
 * connection, after CONNECT_OPEN (event registrations). Made only when it
 * succeeded once; never undone before vrpc_close().
 */
int vrpc_call_persistent(struct vrpc *c, uint32_t prog, int32_t proc,
			 xdrproc_t args_fn, const void *args,
			 char **ret_error);

/*
 * Late-reply handler: runs on the reader thread (the same rules as the event
 * handler, with the same userdata) for a REPLY nobody waits for any more,
 * with its serial and the libvirt error code it carries (0: a success).
 * Set it once, right after vrpc_open() and before any tracked call.
 */
typedef void (*vrpc_late_fn)(void *userdata, uint32_t serial, int error_code);
void vrpc_set_late_handler(struct vrpc *c, vrpc_late_fn fn);

/*
 * vrpc_call(); when it fails with -ETIMEDOUT after the call was sent, also
 * stores the call's serial in *ret_late (else leaves it alone: set it to
 * -1 first to tell): its reply may still come, to the late handler.
 */
int vrpc_call_tracked(struct vrpc *c, uint32_t prog, int32_t proc,
		      xdrproc_t args_fn, const void *args, xdrproc_t ret_fn,
		      void *ret, int64_t *ret_late, char **ret_error);

/* Drops the connection now, as if the peer had closed it (tests). */
void vrpc_disconnect(struct vrpc *c);
