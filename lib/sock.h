/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The socket layer under both clients (qmp.c, the vrpc transports), private
 * to lib/: deadlines, connecting with a deadline, writing with a deadline,
 * and the one error setter.
 *
 * A deadline is an absolute struct timespec on CLOCK_MONOTONIC: made once
 * per call with sock_deadline(), then handed down, so that every step
 * (name lookup, connect, lock, write, waiting for the reply) shares it.
 * Condition variables made with sock_cond_init() wait on it as is.
 *
 * Errors are negative errno values. Wherever a function takes
 * `char **ret_error` (may be NULL), a failure stores a malloc'd message
 * there, for humans.
 */

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* ---- deadlines ---- */

/* The deadline timeout_ms (>= 0) from now. */
struct timespec sock_deadline(int timeout_ms);

/* Milliseconds left until dl, rounded up; 0 once it passed. */
int sock_ms_left(const struct timespec *dl);

/* Now on CLOCK_MONOTONIC, in milliseconds. */
int64_t sock_now_ms(void);

/* A condition variable whose timed waits take a deadline as is. */
void sock_cond_init(pthread_cond_t *c);

/* Locks m, giving up at dl: 0 or -ETIMEDOUT. */
int sock_lock_until(pthread_mutex_t *m, const struct timespec *dl);

/* ---- errors ---- */

/*
 * The one error setter of lib/ (hv_error() is this for hv.h's users): stores
 * a printf-formatted message in *ret_error, freeing what was there (on
 * ENOMEM the old message stays), when ret_error is not NULL, and returns
 * err, so that `return sock_error(ret_error, -EINVAL, "...")` works.
 */
int sock_error(char **ret_error, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int sock_verror(char **ret_error, int err, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));

/* ---- connecting ---- */

/*
 * Connect to a UNIX socket at path or to TCP host:port (a name or an address
 * literal; port numeric) before dl, name lookup included. Return a connected
 * stream socket, non-blocking and close-on-exec, or a negative errno:
 *   -ENXIO         host does not resolve ("the host name H does not resolve")
 *   -ETIMEDOUT     dl passed (looking up, or waiting in a full backlog)
 *   -ENAMETOOLONG  path does not fit a UNIX socket address
 *   -ECONNREFUSED, -ENOENT, -EHOSTUNREACH, ...  what connect() said
 * with the message (without the caller's prefix) in *ret_error.
 */
int sock_connect_unix(const char *path, const struct timespec *dl,
		      char **ret_error);
int sock_connect_tcp(const char *host, const char *port,
		     const struct timespec *dl, char **ret_error);

/* ---- writing ---- */

/*
 * Writes all of buf to fd before dl, without SIGPIPE. Returns 0, -ETIMEDOUT
 * or -ENOTCONN (the peer is gone), and in *ret_sent (may be NULL) how much
 * went out. Half a message left on the wire ruins the stream: when some but
 * not all went out, the socket is shut down.
 */
int sock_write_all(int fd, const void *buf, size_t size,
		   const struct timespec *dl, size_t *ret_sent);
