/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The socket layer under both clients. See sock.h for the contract.
 *
 * Connecting: the socket is blocking while connect() runs, with SO_SNDTIMEO
 * set to the time left, which bounds both a TCP handshake and a wait in a
 * full UNIX listen backlog (a non-blocking UNIX connect() would fail at once
 * with EAGAIN instead). It is made non-blocking once connected. A name is
 * looked up by getaddrinfo_a() on glibc's helper thread, so that a resolver
 * that does not answer costs the deadline, not forever.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sock.h"

/* ---- deadlines ---- */

struct timespec sock_deadline(int timeout_ms)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	t.tv_sec += timeout_ms / 1000;
	t.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (t.tv_nsec >= 1000000000) {
		t.tv_sec++;
		t.tv_nsec -= 1000000000;
	}
	return t;
}

static int64_t ns_left(const struct timespec *dl)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (int64_t)(dl->tv_sec - now.tv_sec) * 1000000000 +
	       (dl->tv_nsec - now.tv_nsec);
}

int sock_ms_left(const struct timespec *dl)
{
	int64_t ns = ns_left(dl);

	if (ns <= 0)
		return 0;
	if (ns > (int64_t)INT32_MAX * 1000000)
		return INT32_MAX;
	return (int)((ns + 999999) / 1000000);
}

int64_t sock_now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

void sock_cond_init(pthread_cond_t *c)
{
	pthread_condattr_t a;

	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(c, &a);
	pthread_condattr_destroy(&a);
}

/*
 * pthread_mutex_clocklock() would take dl as is, but sanitizers do not know
 * it; timedlock wants CLOCK_REALTIME, so the remaining time is moved there.
 */
int sock_lock_until(pthread_mutex_t *m, const struct timespec *dl)
{
	struct timespec real;
	int64_t ns = ns_left(dl);

	clock_gettime(CLOCK_REALTIME, &real);
	if (ns > 0) {
		ns += real.tv_nsec;
		real.tv_sec += ns / 1000000000;
		real.tv_nsec = ns % 1000000000;
	}
	return -pthread_mutex_timedlock(m, &real);
}

/* ---- errors ---- */

int sock_verror(char **ret_error, int err, const char *fmt, va_list ap)
{
	char *msg;

	if (!ret_error)
		return err;
	if (vasprintf(&msg, fmt, ap) >= 0) {
		free(*ret_error);
		*ret_error = msg;
	}
	return err;
}

int sock_error(char **ret_error, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	sock_verror(ret_error, err, fmt, ap);
	va_end(ap);
	return err;
}

/* ---- connecting ---- */

/* SO_SNDTIMEO to the time left: it bounds a blocking connect(). */
static int set_send_timeout(int fd, const struct timespec *dl)
{
	int64_t us = ns_left(dl) / 1000;
	struct timeval tv;

	if (us <= 0)
		return -ETIMEDOUT; /* a zero timeval would mean "forever" */
	tv.tv_sec = us / 1000000;
	tv.tv_usec = us % 1000000;
	if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
		return -errno;
	return 0;
}

/* After a TCP connect() a signal interrupted: it goes on by itself. */
static int wait_connected(int fd, const struct timespec *dl)
{
	struct pollfd pfd = { .fd = fd, .events = POLLOUT };
	socklen_t sl = sizeof(int);
	int r, soerr = 0;

	do {
		r = poll(&pfd, 1, sock_ms_left(dl));
	} while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	if (r == 0)
		return -ETIMEDOUT;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
		return -errno;
	return -soerr;
}

static int connect_addr(int family, int type, int proto,
			const struct sockaddr *sa, socklen_t salen,
			const struct timespec *dl)
{
	int fd = socket(family, type | SOCK_CLOEXEC, proto);
	int r;

	if (fd < 0)
		return -errno;
	r = set_send_timeout(fd, dl);
	if (r == 0) {
		do {
			r = connect(fd, sa, salen) < 0 ? -errno : 0;
		} while (r == -EINTR && family == AF_UNIX);
		if (r == -EINTR)
			r = wait_connected(fd, dl);
		/* The timeout expired in the handshake or the backlog. */
		else if (r == -EINPROGRESS || r == -EAGAIN)
			r = -ETIMEDOUT;
	}
	if (r == 0 && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0)
		r = -errno;
	if (r < 0) {
		close(fd);
		return r;
	}
	return fd;
}

static int connect_error(char **ret_error, int r)
{
	return sock_error(ret_error, r, "%s", strerror(-r));
}

int sock_connect_unix(const char *path, const struct timespec *dl,
		      char **ret_error)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path))
		return connect_error(ret_error, -ENAMETOOLONG);
	memcpy(sa.sun_path, path, strlen(path));
	fd = connect_addr(AF_UNIX, SOCK_STREAM, 0, (struct sockaddr *)&sa,
			  sizeof(sa), dl);
	return fd < 0 ? connect_error(ret_error, fd) : fd;
}

static int gai_errno(int r)
{
	return r == EAI_MEMORY ? -ENOMEM : r == EAI_SYSTEM ? -EIO : -ENXIO;
}

/*
 * Name resolution bounded by dl. When the lookup cannot be cancelled in
 * time, its request block is left to glibc's helper thread (a small,
 * deliberate leak) rather than freed under its feet.
 */
static int resolve(const char *host, const char *port,
		   const struct timespec *dl, struct addrinfo **ret)
{
	const struct addrinfo numeric = {
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_NUMERICHOST,
	};
	struct addrinfo *hints;
	struct gaicb *req;
	int r;

	/* An address literal needs no resolver (and no helper thread). */
	r = getaddrinfo(host, port, &numeric, ret);
	if (r != EAI_NONAME)
		return r == 0 ? 0 : gai_errno(r);
	req = calloc(1, sizeof(*req) + sizeof(*hints));
	if (!req)
		return -ENOMEM;
	hints = (struct addrinfo *)(req + 1);
	hints->ai_socktype = SOCK_STREAM;
	hints->ai_flags = AI_ADDRCONFIG;
	req->ar_name = host;
	req->ar_service = port;
	req->ar_request = hints;
	struct gaicb *list[1] = { req };
	r = getaddrinfo_a(GAI_NOWAIT, list, 1, NULL);
	if (r != 0) {
		free(req);
		return gai_errno(r);
	}
	for (;;) {
		int ms = sock_ms_left(dl);
		struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

		if (gai_suspend((const struct gaicb *const *)list, 1, &ts) !=
		    EAI_INTR)
			break;
	}
	r = gai_error(req);
	if (r == EAI_INPROGRESS) {
		if (gai_cancel(req) == EAI_CANCELED)
			free(req);
		return -ETIMEDOUT; /* else leaks req, see above */
	}
	*ret = req->ar_result;
	free(req);
	return r == 0 ? 0 : gai_errno(r);
}

int sock_connect_tcp(const char *host, const char *port,
		     const struct timespec *dl, char **ret_error)
{
	struct addrinfo *ai = NULL;
	int r = resolve(host, port, dl, &ai);

	if (r == -ENXIO)
		return sock_error(ret_error, r,
				  "the host name %s does not resolve", host);
	if (r < 0)
		return connect_error(ret_error, r);
	r = -EHOSTUNREACH;
	for (struct addrinfo *a = ai; a; a = a->ai_next) {
		r = connect_addr(a->ai_family, a->ai_socktype, a->ai_protocol,
				 a->ai_addr, a->ai_addrlen, dl);
		if (r >= 0 || r == -ETIMEDOUT)
			break;
	}
	freeaddrinfo(ai);
	return r < 0 ? connect_error(ret_error, r) : r;
}

/* ---- writing ---- */

int sock_write_all(int fd, const void *buf, size_t size,
		   const struct timespec *dl, size_t *ret_sent)
{
	const char *p = buf;
	size_t off = 0;
	int r = 0;

	while (off < size) {
		ssize_t n = send(fd, p + off, size - off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n >= 0) {
			off += (size_t)n;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			r = -ENOTCONN;
			break;
		}
		struct pollfd pfd = { .fd = fd, .events = POLLOUT };
		int ms = sock_ms_left(dl);

		if (ms == 0) {
			r = -ETIMEDOUT;
			break;
		}
		if (poll(&pfd, 1, ms) < 0 && errno != EINTR) {
			r = -errno;
			break;
		}
	}
	/* Half a message on the wire: the stream is lost. */
	if (r < 0 && off > 0)
		shutdown(fd, SHUT_RDWR);
	if (ret_sent)
		*ret_sent = off;
	return r;
}
