/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The transports of the libvirt client, one ops table each. See
 * vrpc-transport.h.
 */
#include <errno.h>
#include <unistd.h>

#include "sock.h"
#include "vrpc-transport.h"

static int unix_connect(const struct vrpc_uri *u, const struct timespec *dl,
			struct vrpc_link *ret, char **ret_error)
{
	int fd = sock_connect_unix(u->path, dl, ret_error);

	/* A daemon that stopped may have removed its socket. */
	if (fd == -ENOENT)
		return -ECONNREFUSED;
	if (fd < 0)
		return fd;
	ret->fd = fd;
	return 0;
}

static int tcp_connect(const struct vrpc_uri *u, const struct timespec *dl,
		       struct vrpc_link *ret, char **ret_error)
{
	int fd = sock_connect_tcp(u->host, u->port, dl, ret_error);

	if (fd < 0)
		return fd;
	ret->fd = fd;
	return 0;
}

static const struct vrpc_transport_ops transports[] = {
	[VRPC_TRANSPORT_UNIX] = { .name = "unix", .connect = unix_connect },
	[VRPC_TRANSPORT_TCP] = { .name = "tcp", .connect = tcp_connect },
};

int vrpc_transport_connect(const struct vrpc_uri *u, const struct timespec *dl,
			   struct vrpc_link *ret, char **ret_error)
{
	const struct vrpc_transport_ops *ops;
	struct vrpc_link l = VRPC_LINK_NONE;
	int r;

	if ((unsigned)u->transport >= sizeof(transports) / sizeof(*transports))
		return sock_error(ret_error, -EOPNOTSUPP,
				  "transport %d is not supported",
				  (int)u->transport);
	ops = &transports[u->transport];
	l.ops = ops;
	r = ops->connect(u, dl, &l, ret_error);
	if (r < 0)
		return r;
	*ret = l;
	return 0;
}

void vrpc_transport_close(struct vrpc_link *l)
{
	if (l->fd < 0)
		return;
	if (l->ops && l->ops->close)
		l->ops->close(l);
	else
		close(l->fd);
	*l = VRPC_LINK_NONE;
}
