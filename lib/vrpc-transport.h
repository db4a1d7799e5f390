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
 * This is the seam for what comes: SSH runs `ssh HOST virt-ssh-helper` (or
 * nc) on one end of a socketpair and hands the other end up as the link,
 * keeping the child in `priv` for close() to reap; TLS keeps its session in
 * `priv` and adds read/write entries that the client then calls instead of
 * recv/send.
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
};

/* Connects over u's transport; -EOPNOTSUPP for one we do not have. */
int vrpc_transport_connect(const struct vrpc_uri *u, const struct timespec *dl,
			   struct vrpc_link *ret, char **ret_error);

/* Closes l (if any) and leaves it VRPC_LINK_NONE. */
void vrpc_transport_close(struct vrpc_link *l);
