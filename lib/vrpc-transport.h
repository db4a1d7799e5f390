/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The transports of the libvirt client (private to lib/): a transport turns
 * a parsed URI into a link, a connected stream socket (non-blocking,
 * close-on-exec) that the client reads and writes as bytes, and later
 * closes it. Each transport is one ops table in vrpc-transport.c, chosen by
 * the URI's `enum vrpc_transport`:
 *   unix  a UNIX socket (libvirtd's, virtqemud's, or ?socket=PATH)
 *   tcp   HOST:PORT, the name looked up within the deadline
 *   ssh   `ssh -o BatchMode=yes HOST virt-ssh-helper URI` (or `nc -U SOCKET`)
 *         on one end of a socketpair, the other end is the link; the child
 *         is kept in `priv`, its stderr read into the log and, when the
 *         handshake fails, into the error (explain()); close() reaps it
 *         (SIGTERM, then SIGKILL when it hangs)
 *   tls   HOST:PORT (16514) with TLS (vrpc-tls.c): libvirt's PKI files,
 *         the server's certificate checked against the host name, the
 *         daemon's one-byte verdict on ours, all within the deadline; then
 *         a relay thread (in `priv`) carries plaintext between the TLS
 *         session and one end of a socketpair, the other end is the link;
 *         explain() gives a TLS failure the relay met (-EPROTO)
 *
 * connect() takes the caller's deadline for everything it does (lookup,
 * handshake, authentication). Errors are negative errno values with a
 * message (without a prefix) in *ret_error (may be NULL); a missing UNIX
 * socket is -ECONNREFUSED, never -ENOENT, which callers read as "no such
 * domain".
 */

#include <time.h>

#include "vrpc-uri.h"

struct vrpc_transport_ops;

struct vrpc_link {
	int fd;                              /* -1: no link */
	const struct vrpc_transport_ops *ops;
	void *priv;                          /* the transport's own state */
};

#define VRPC_LINK_NONE ((struct vrpc_link){ .fd = -1 })

struct vrpc_transport_ops {
	const char *name;
	int (*connect)(const struct vrpc_uri *u, const struct timespec *dl,
		       struct vrpc_link *ret, char **ret_error);
	/* NULL: close(fd) is all. */
	void (*close)(struct vrpc_link *l);
	/* NULL: nothing to add. See vrpc_transport_explain(). */
	int (*explain)(struct vrpc_link *l, int err, const struct timespec *dl,
		       char **ret_error);
};

/* Connects over u's transport; -EOPNOTSUPP for one we do not have. */
int vrpc_transport_connect(const struct vrpc_uri *u, const struct timespec *dl,
			   struct vrpc_link *ret, char **ret_error);

/*
 * The handshake over l failed with err (its message in *ret_error): a
 * transport that knows why (ssh's own words on stderr: a host key that does
 * not match, a refused key) replaces the message and returns the errno that
 * fits (-EACCES, -ECONNREFUSED, ...); otherwise returns err and leaves the
 * message. Waits at most until dl (and 1 s) for the transport's last words.
 */
int vrpc_transport_explain(struct vrpc_link *l, int err,
			   const struct timespec *dl, char **ret_error);

/* Closes l (if any) and leaves it VRPC_LINK_NONE. */
void vrpc_transport_close(struct vrpc_link *l);

/* The TLS transport's ops (vrpc-tls.c), for the table in vrpc-transport.c. */
int vrpc_tls_connect(const struct vrpc_uri *u, const struct timespec *dl,
		     struct vrpc_link *ret, char **ret_error);
void vrpc_tls_close(struct vrpc_link *l);
int vrpc_tls_explain(struct vrpc_link *l, int err, const struct timespec *dl,
		     char **ret_error);
