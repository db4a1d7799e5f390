/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * The daemon's basics, used by every module of fs/: options (main.c), the
 * log (log.c), the clock. Each module has a header of its own stating its
 * contract; docs/design.md ("Structure") has the table of modules and what
 * each may call. The lock order is written once, in tree.h.
 */

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <time.h>

#include "hv.h"

#define HVFS_MAX_THREADS 128
#define HVFS_MALLOC_ARENAS 2
#define HVFS_LOG_DIR "/run/hvfs" /* logs when there is no syslog */
#define HVFS_ENTRY_TIMEOUT 0.5
#define HVFS_ATTR_TIMEOUT 0.5
#define HVFS_KEPT_TIMEOUT 3600.0 /* entries and attributes of kept files */

struct hvfs_options {
	int timeout_ms;      /* -o timeout=SECONDS */
	bool foreground;     /* -f */
	bool debug;          /* -d */
	bool allow_other;    /* -o allow_other: also turns on default_permissions */
	bool nonempty;       /* -o nonempty: may mount over files or a mount */
	const char *logfile; /* -o logfile=PATH */
	bool have_ctlgroup;  /* -o ctlgroup=NAME */
	gid_t ctlgroup;
	bool kernel_cache;   /* -o kernel_cache: kept files (files.h) */
};

/* Set once by main() before the session starts; read-only afterwards. */
extern struct hvfs_options hvfs_opts;

/*
 * log.c: stderr in the foreground; in the background syslog, or the file
 * hvfs_log_file() opened (appended to, one time-stamped line a message).
 */
void hvfs_log_init(bool foreground, bool debug);
/* Logs to path from the next hvfs_log_init(false, ...) on; or -errno. */
int hvfs_log_file(const char *path);
void hvfs_log(int prio, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* CLOCK_REALTIME in microseconds since the epoch (times files show). */
static inline int64_t hvfs_wall_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_REALTIME, &t);
	return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

/* CLOCK_MONOTONIC in milliseconds. */
static inline int64_t hvfs_now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}
