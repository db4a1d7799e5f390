/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <stdarg.h>
#include <stdio.h>
#include <syslog.h>

#include "hvfs.h"

static bool to_stderr = true;
static bool verbose;

void hvfs_log_init(bool foreground, bool debug)
{
	to_stderr = foreground;
	verbose = debug;
	if (!foreground)
		openlog("hvfs", LOG_PID, LOG_DAEMON);
}

void hvfs_log(int prio, const char *fmt, ...)
{
	va_list ap;

	if (prio == LOG_DEBUG && !verbose)
		return;
	va_start(ap, fmt);
	if (to_stderr) {
		/* One write per line, so lines from many threads don't mix. */
		char line[1024];

		vsnprintf(line, sizeof(line), fmt, ap);
		fprintf(stderr, "hvfs: %s\n", line);
	} else {
		vsyslog(prio, fmt, ap);
	}
	va_end(ap);
}
