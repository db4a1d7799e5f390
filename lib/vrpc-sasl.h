/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * SASL authentication of a libvirt connection (private to lib/; vrpc.c is
 * its only user), through Cyrus SASL as libvirt's own client does, and the
 * security layer that the exchange may negotiate.
 *
 * vrpc_sasl_auth() runs AUTH_SASL_INIT, AUTH_SASL_START and AUTH_SASL_STEP
 * on a connection whose AUTH_LIST offered SASL. The mechanism is Cyrus
 * SASL's pick among the daemon's (SCRAM-SHA-256, DIGEST-MD5, ... whatever
 * plugins are installed). Credentials (authname, password, and username and
 * realm when present) come from auth.conf (vrpc-authfile.h; the URI's
 * authfile= first), for the URI's host ("localhost" without one), and are
 * never prompted for: a missing one fails the mechanism.
 *
 * Over a link that is not secure by itself (TCP), a security layer of at
 * least 56 bits (SSF) is required, as libvirtd and libvirt's client both
 * do: DIGEST-MD5 with auth-conf, GSSAPI. Over a UNIX socket or ssh no layer
 * is asked for. Once the exchange negotiated one, every later byte on the
 * link both ways goes through vrpc_sasl_encode() and vrpc_sasl_recv().
 *
 * Errors are negative errno values with a message in *ret_error: -EACCES for
 * every failed authentication (a wrong password, a missing credential, no
 * common mechanism), with the daemon's or Cyrus SASL's words.
 */

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "vrpc-codec.h"
#include "vrpc-uri.h"

struct vrpc_sasl;

/*
 * How the exchange makes its calls: procedure proc of the REMOTE program
 * on the connection being authenticated, within its deadline, as the
 * client's calls do (0, or a negative errno with libvirt's message).
 */
typedef int (*vrpc_sasl_call_fn)(void *userdata, int32_t proc,
				 xdrproc_t args_fn, const void *args,
				 xdrproc_t ret_fn, void *ret,
				 char **ret_error);

/*
 * Authenticates the connection to u whose link is fd, making its calls
 * with call(userdata, ...). Returns 0 and, when a security layer was
 * negotiated, the session in *ret (else *ret is NULL); the caller then
 * routes the link's bytes through it and frees it with vrpc_sasl_free()
 * after the link is closed.
 */
int vrpc_sasl_auth(const struct vrpc_uri *u, int fd, vrpc_sasl_call_fn call,
		   void *userdata, struct vrpc_sasl **ret, char **ret_error);

/*
 * Encodes the next at most vrpc_sasl_max_chunk() bytes of outgoing data:
 * *ret points into s, valid until the next encode. Writers must be
 * serialised by the caller; encoding may run alongside vrpc_sasl_recv().
 */
int vrpc_sasl_encode(struct vrpc_sasl *s, const uint8_t *in, size_t len,
		     const uint8_t **ret, size_t *ret_len);
size_t vrpc_sasl_max_chunk(const struct vrpc_sasl *s);

/*
 * recv(fd, buf, size, MSG_DONTWAIT) through the layer: decoded bytes (> 0),
 * 0 at the end of the stream, or -1 with errno (EAGAIN: nothing decoded
 * yet, poll fd; EPROTO: the peer's data does not decode). One reader.
 */
ssize_t vrpc_sasl_recv(struct vrpc_sasl *s, int fd, uint8_t *buf,
		       size_t size);

/* Accepts NULL; returns NULL. */
struct vrpc_sasl *vrpc_sasl_free(struct vrpc_sasl *s);
