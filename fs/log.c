/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "hvfs.h"

static bool to_stderr = true;
static bool verbose;
static int log_fd = -1; /* a log file, in the background */

void hvfs_log_init(bool foreground, bool debug)
{
	to_stderr = foreground;
	verbose = debug;
	if (!foreground && log_fd < 0)
		openlog("hvfs", LOG_PID, LOG_DAEMON);
}

int hvfs_log_file(const char *path)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);

	if (fd < 0)
		return -errno;
	if (log_fd >= 0)
		close(log_fd);
	log_fd = fd;
	return 0;
}

void hvfs_log(int prio, const char *fmt, ...)
{
	va_list ap;

	if (prio == LOG_DEBUG && !verbose)
		return;
	va_start(ap, fmt);
	if (to_stderr || log_fd >= 0) {
		/* One write per line, so lines from many threads don't mix. */
		char msg[1024], line[1100], stamp[32] = "";
		int n;

		vsnprintf(msg, sizeof(msg), fmt, ap);
		if (to_stderr) {
			n = snprintf(line, sizeof(line), "hvfs: %s\n", msg);
		} else {
			time_t now = time(NULL);
			struct tm tm;

			gmtime_r(&now, &tm);
			strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ",
				 &tm);
			n = snprintf(line, sizeof(line), "%s hvfs[%d]: %s\n",
				     stamp, (int)getpid(), msg);
		}
		if (n > (int)sizeof(line) - 1)
			n = sizeof(line) - 1;
		if (write(to_stderr ? STDERR_FILENO : log_fd, line, n) < 0) {
			/* nowhere left to say it */
		}
	} else {
		vsyslog(prio, fmt, ap);
	}
	va_end(ap);
}
