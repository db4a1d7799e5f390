/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Our own mount, told apart from any other at the same path by its device
 * number, as /proc/self/mountinfo shows it (stat() of the mount's root would
 * ask this very daemon, which may not be serving yet).
 *
 * A copy of the mount may live on in another mount namespace after
 * `fusermount3 -u` removed it from ours: the daemon then stops (its copies
 * elsewhere go dead) instead of holding every monitor, and it never unmounts
 * a newer mount that took the path.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "mount.h"

/* mountinfo escapes ' ', '\t', '\n' and '\\' as \ooo. */
static void unescape(char *s)
{
	char *out = s;

	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' &&
		    s[2] >= '0' && s[2] <= '7' && s[3] >= '0' && s[3] <= '7') {
			*out++ = (char)((s[1] - '0') << 6 | (s[2] - '0') << 3 |
					(s[3] - '0'));
			s += 3;
		} else {
			*out++ = *s;
		}
	}
	*out = '\0';
}

/*
 * Scans this namespace's mounts: the device of the topmost mount at path
 * (if path) into ret_top, and whether a mount of device dev (if dev) is
 * anywhere. -errno when mountinfo cannot be read.
 */
static int scan(const char *path, char ret_top[MOUNT_DEV_MAX], const char *dev,
		bool *ret_has_dev)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char *line = NULL;
	size_t cap = 0;

	if (!f)
		return -errno;
	if (ret_top)
		ret_top[0] = '\0';
	if (ret_has_dev)
		*ret_has_dev = false;
	while (getline(&line, &cap, f) > 0) {
		char mdev[MOUNT_DEV_MAX], where[4096];

		/* ID PARENT MAJ:MIN ROOT MOUNTPOINT ... */
		if (sscanf(line, "%*s %*s %31s %*s %4095s", mdev, where) != 2)
			continue;
		unescape(where);
		if (path && strcmp(where, path) == 0)
			strcpy(ret_top, mdev); /* later lines are on top */
		if (dev && strcmp(mdev, dev) == 0)
			*ret_has_dev = true;
	}
	free(line);
	fclose(f);
	return 0;
}

int mount_identify(const char *path, char ret_dev[MOUNT_DEV_MAX])
{
	int r = scan(path, ret_dev, NULL, NULL);

	if (r == 0 && !ret_dev[0])
		r = -ENOENT;
	return r;
}

bool mount_is_ours(const char *path, const char *dev)
{
	char top[MOUNT_DEV_MAX];

	return scan(path, top, NULL, NULL) == 0 && strcmp(top, dev) == 0;
}

bool mount_connected(struct fuse_session *se)
{
	struct pollfd p = { .fd = fuse_session_fd(se) };

	/* /dev/fuse says POLLERR once the connection ended (unmounted). */
	return poll(&p, 1, 0) == 0 || !(p.revents & POLLERR);
}

void mount_disown(struct fuse_session *se)
{
	int p[2];

	/*
	 * fuse_session_unmount() frees libfuse's state, but unmounts unless
	 * the session's descriptor polls POLLERR (an ended connection). Put
	 * there the write end of a pipe without readers, which does: this
	 * also closes /dev/fuse, so our connection ends as it must.
	 */
	if (pipe2(p, O_CLOEXEC) < 0)
		return;
	close(p[0]);
	if (dup3(p[1], fuse_session_fd(se), O_CLOEXEC) < 0)
		hvfs_log(LOG_WARNING, "cannot let go of the mount: %m");
	close(p[1]);
}

struct watch {
	char dev[MOUNT_DEV_MAX];
	struct fuse_session *se;
	pthread_t main, thread;
	int stop[2];    /* mount_unwatch() writes, the watcher polls */
};

/* The one watcher, from mount_watch() to mount_unwatch() (main thread). */
static struct watch *watching;

/* Only interrupts the main thread's wait: it then sees the session ended.
 * Never removed, so that a late one is harmless. */
static void on_wake(int sig)
{
	(void)sig;
}

static void *watch_main(void *arg)
{
	struct watch *w = arg;
	int fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);

	/* The kernel wakes mountinfo's pollers with POLLPRI at any change. */
	for (;;) {
		struct pollfd p[2] = {
			{ .fd = fd, .events = POLLPRI },
			{ .fd = w->stop[0], .events = POLLIN },
		};
		bool has = true;

		if (fd < 0 || poll(p, 2, -1) < 0) {
			if (fd >= 0 && errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents)
			break;
		/* Gone from here while the connection lives: a copy in
		 * another namespace keeps it (a plain unmount ends it). */
		if (scan(NULL, NULL, w->dev, &has) == 0 && !has &&
		    mount_connected(w->se)) {
			hvfs_log(LOG_NOTICE, "the mount left this mount "
				 "namespace: exiting");
			fuse_session_exit(w->se);
			pthread_kill(w->main, SIGUSR1);
			break;
		}
	}
	if (fd >= 0)
		close(fd);
	return NULL;
}

int mount_watch(struct fuse_session *se, const char *dev)
{
	struct sigaction sa = { .sa_handler = on_wake };
	struct watch *w = calloc(1, sizeof(*w));
	pthread_attr_t attr;
	int r;

	if (!w)
		return -ENOMEM;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL) < 0 ||
	    pipe2(w->stop, O_CLOEXEC) < 0) {
		r = -errno;
		free(w);
		return r;
	}
	w->se = se;
	snprintf(w->dev, sizeof(w->dev), "%s", dev);
	w->main = pthread_self();
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 64 << 10);
	r = -pthread_create(&w->thread, &attr, watch_main, w);
	pthread_attr_destroy(&attr);
	if (r < 0) {
		close(w->stop[0]);
		close(w->stop[1]);
		free(w);
		return r;
	}
	watching = w;
	return 0;
}

void mount_unwatch(void)
{
	struct watch *w = watching;

	if (!w)
		return;
	watching = NULL;
	if (write(w->stop[1], "", 1) < 0) {
		/* A pipe with room: cannot fail; the join below would wait. */
	}
	pthread_join(w->thread, NULL);
	close(w->stop[0]);
	close(w->stop[1]);
	free(w);
}
