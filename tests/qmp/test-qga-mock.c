/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The guest agent client (lib/qga.c) against a scripted agent on a UNIX
 * socket: what a real agent does not do on demand. Garbage and stale
 * replies around the resync, a garbage reply, silence (ETIMEDOUT within
 * the deadline, then at once until a sign of life), a reply over
 * QGA_REPLY_MAX, a peer that hangs up, no socket at all (ENODATA).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "qga.h"
#include "testutil.h"

enum mode { GOOD, GARBAGE_SYNC, GARBAGE_REPLY, SILENT, HUGE, HANGUP };

static struct {
	pthread_mutex_t lock;
	enum mode mode;
	int conns;  /* connections accepted */
	int syncs;  /* sync requests seen */
	int client; /* the current connection, or -1 */
} peer = { .lock = PTHREAD_MUTEX_INITIALIZER, .client = -1 };

static enum mode get_mode(void)
{
	enum mode m;

	pthread_mutex_lock(&peer.lock);
	m = peer.mode;
	pthread_mutex_unlock(&peer.lock);
	return m;
}

static void set_mode(enum mode m)
{
	pthread_mutex_lock(&peer.lock);
	peer.mode = m;
	pthread_mutex_unlock(&peer.lock);
}

static void say(int fd, const char *s, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, s, n, MSG_NOSIGNAL);

		if (w <= 0)
			return;
		s += w;
		n -= (size_t)w;
	}
}

#define SAY(fd, s) say(fd, s, strlen(s))

static void answer(int fd, const char *line)
{
	const char *sync = strstr(line, "guest-sync-delimited");
	enum mode m = get_mode();
	char buf[200];

	if (sync) {
		long long id = atoll(strstr(line, "\"id\":") + 5);

		pthread_mutex_lock(&peer.lock);
		peer.syncs++;
		pthread_mutex_unlock(&peer.lock);
		if (m == SILENT)
			return;
		if (m == GARBAGE_SYNC) {
			/* Stale bytes, a wrong id, garbage, then the id. */
			snprintf(buf, sizeof(buf), "junk\n{\"return\":7}\n\xff"
				 "{\"return\":%lld1}\nnot json\n{\"error\":"
				 "{\"class\":\"GenericError\"}}\n"
				 "{\"return\":%lld}\n", id, id);
		} else {
			snprintf(buf, sizeof(buf), "\xff{\"return\":%lld}\n",
				 id);
		}
		SAY(fd, buf);
		return;
	}
	switch (m) {
	case GOOD:
	case GARBAGE_SYNC:
		SAY(fd, "{\"return\":{\"ok\":1}}\r\n");
		break;
	case GARBAGE_REPLY:
		SAY(fd, "this is not JSON\n");
		break;
	case SILENT:
		break;
	case HUGE: {
		size_t n = QGA_REPLY_MAX + (1u << 20);
		char *big = malloc(n);

		REQUIRE(big);
		memset(big, 'a', n);
		SAY(fd, "{\"return\":\"");
		say(fd, big, n);
		SAY(fd, "\"}\n");
		free(big);
		break;
	}
	case HANGUP:
		shutdown(fd, SHUT_RDWR);
		break;
	}
}

static void *serve(void *arg)
{
	int lfd = *(int *)arg;

	for (;;) {
		int fd = accept(lfd, NULL, NULL);
		char line[4096];
		size_t len = 0;

		if (fd < 0)
			return NULL;
		pthread_mutex_lock(&peer.lock);
		peer.conns++;
		peer.client = fd;
		pthread_mutex_unlock(&peer.lock);
		for (;;) {
			char ch;
			ssize_t n = read(fd, &ch, 1);

			if (n <= 0)
				break;
			if ((unsigned char)ch == 0xff)
				continue; /* the parser reset */
			if (ch != '\n') {
				if (len < sizeof(line) - 1)
					line[len++] = ch;
				continue;
			}
			line[len] = '\0';
			len = 0;
			answer(fd, line);
		}
		pthread_mutex_lock(&peer.lock);
		peer.client = -1;
		pthread_mutex_unlock(&peer.lock);
		close(fd);
	}
}

static int run(struct qga *q, int timeout_ms, char **reply, int64_t *ms)
{
	char *e = NULL;
	int64_t t0 = test_now_ms();
	int r;

	*reply = NULL;
	r = qga_execute_json(q, "{\"execute\":\"guest-info\"}", timeout_ms,
			     false, reply, &e);
	*ms = test_now_ms() - t0;
	printf("# %d after %lld ms: %s\n", r, (long long)*ms,
	       r < 0 ? e : *reply);
	CHECK(r >= 0 || (e && *e)); /* every failure says why */
	free(e);
	return r;
}

int main(void)
{
	const char *dir = test_init("qga-mock");
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct qga *q;
	pthread_t t;
	char *reply = NULL, path[100];
	int64_t ms;
	int lfd, r;

	snprintf(path, sizeof(path), "%s/vm.qga", dir);

	/* No socket: ENODATA at once. */
	q = qga_new(path);
	REQUIRE(q);
	r = run(q, 2000, &reply, &ms);
	CHECK(r == -ENODATA && ms < 500);
	CHECK(qga_probe(q, 1000) == -ENODATA);

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	REQUIRE(bind(lfd, (struct sockaddr *)&sun, sizeof(sun)) == 0);
	REQUIRE(listen(lfd, 4) == 0);
	pthread_create(&t, NULL, serve, &lfd);

	/* A sane agent. */
	set_mode(GOOD);
	r = run(q, 2000, &reply, &ms);
	CHECK(r == 0 && STREQ(reply, "{\"return\":{\"ok\":1}}"));
	free(reply);
	/* One sync per connection while in step. */
	r = run(q, 2000, &reply, &ms);
	free(reply);
	pthread_mutex_lock(&peer.lock);
	CHECK(peer.syncs == 1 && peer.conns == 1);
	pthread_mutex_unlock(&peer.lock);

	/* Garbage and stale replies around the sync are skipped. */
	set_mode(GARBAGE_SYNC);
	qga_free(q);
	q = qga_new(path);
	r = run(q, 2000, &reply, &ms);
	CHECK(r == 0 && STREQ(reply, "{\"return\":{\"ok\":1}}"));
	free(reply);

	/* A garbage reply: EPROTO; the next call starts over and works. */
	set_mode(GARBAGE_REPLY);
	r = run(q, 2000, &reply, &ms);
	CHECK(r == -EPROTO);
	set_mode(GOOD);
	r = run(q, 2000, &reply, &ms);
	CHECK(r == 0 && reply);
	free(reply);

	/* Silence: ETIMEDOUT within the deadline, then at once. */
	set_mode(SILENT);
	r = run(q, 700, &reply, &ms);
	CHECK(r == -ETIMEDOUT && ms >= 650 && ms < 3000);
	r = run(q, 700, &reply, &ms);
	CHECK(r == -ETIMEDOUT && ms < 200);
	CHECK(qga_probe(q, 700) == 0);
	/* A byte from the agent is a sign of life: the next call syncs. */
	set_mode(GOOD);
	pthread_mutex_lock(&peer.lock);
	if (peer.client >= 0)
		SAY(peer.client, "{\"return\":{}}\n");
	pthread_mutex_unlock(&peer.lock);
	test_sleep_ms(100);
	r = run(q, 2000, &reply, &ms);
	CHECK(r == 0 && STREQ(reply, "{\"return\":{\"ok\":1}}"));
	free(reply);

	/* The same after qga_sign_of_life() (VSERPORT_CHANGE). */
	set_mode(SILENT);
	r = run(q, 500, &reply, &ms);
	CHECK(r == -ETIMEDOUT);
	set_mode(GOOD);
	r = run(q, 500, &reply, &ms);
	CHECK(r == -ETIMEDOUT && ms < 200);
	qga_sign_of_life(q);
	r = run(q, 2000, &reply, &ms);
	CHECK(r == 0 && reply);
	free(reply);
	CHECK(qga_probe(q, 2000) == 1);

	/* A reply over QGA_REPLY_MAX: EFBIG, and the next call works. */
	set_mode(HUGE);
	r = run(q, 10000, &reply, &ms);
	CHECK(r == -EFBIG);
	set_mode(GOOD);
	r = run(q, 2000, &reply, &ms);
	CHECK(r == 0 && reply);
	free(reply);

	/* The agent hangs up: ENODATA, and the next call reconnects. */
	set_mode(HANGUP);
	r = run(q, 2000, &reply, &ms);
	CHECK(r == -ENODATA);
	set_mode(GOOD);
	r = run(q, 2000, &reply, &ms);
	CHECK(r == 0 && reply);
	free(reply);

	/* A command that is not one line is refused before any I/O. */
	CHECK(qga_execute_json(q, "{}\n{}", 1000, false, &reply, NULL) ==
	      -EINVAL);

	qga_free(q);
	shutdown(lfd, SHUT_RDWR);
	close(lfd);
	return check_finish("test-qga-mock");
}
