/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * stats.c: the counters of every domain (lib's hv_stats_all()), fetched in
 * one bulk call per source and reused for STATS_REUSE_MS: a domain's
 * `stats` file and the mount's `.metrics/hvfs.prom`. One bulk call per
 * source is in flight at a time, on a thread of its own with lib's longer
 * deadline; readers that come meanwhile wait for its answer (single flight)
 * within their own deadline, then do without it. Calls: dom, source,
 * events, the log, lib/.
 *
 * Locks: each source's cache lock is a leaf (no call is made with it held).
 */

#include "dom.h"

/* How long one bulk answer serves every reader at least; one that took
 * longer serves as long as it took (docs/fs-layout.md). */
#define STATS_REUSE_MS 1000
/* How long a failed bulk call stands before the next: meanwhile `stats`
 * asks for its domain alone (docs/design.md). */
#define STATS_RETRY_MS 10000
/* How long a `stats` reader waits for a bulk call in flight before it asks
 * for its domain alone: half a read's deadline. .metrics/hvfs.prom waits
 * one and a half (a QMP source's call ends within one, a hung QEMU's entry
 * marked), then shows the answer before. */
#define STATS_WAIT_MS (hvfs_opts.timeout_ms / 2)
#define STATS_PROM_WAIT_MS (hvfs_opts.timeout_ms + hvfs_opts.timeout_ms / 2)

/* The contents of d's `stats` file: `key value` lines in the driver's
 * order (malloc'd in *ret). */
int stats_read_dom(struct dom *d, char **ret, size_t *ret_len,
		   char **ret_error);

/* The contents of metrics/hvfs.prom: every source's domains in
 * Prometheus's text exposition format (malloc'd in *ret). */
int stats_prom(char **ret, size_t *ret_len);

/* At exit, before the sources close: waits up to wait_ms for the bulk
 * calls in flight (on threads of their own); false if some still are, and
 * the connections must then stay open. */
bool stats_stop(int wait_ms);
