/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * stats.c: the counters of every domain (lib's hv_stats_all()), fetched in
 * one bulk call per source and reused for STATS_REUSE_MS: a domain's
 * `stats` file and the mount's `metrics/hvfs.prom`. One bulk call per
 * source is in flight at a time; readers that come meanwhile wait for its
 * answer (single flight). Calls: dom, source, events, the log, lib/.
 *
 * Locks: each source's cache lock is a leaf (no call is made with it held).
 */

#include "dom.h"

/* How long one bulk answer serves every reader (docs/fs-layout.md). */
#define STATS_REUSE_MS 1000

/* The contents of d's `stats` file: `key value` lines in the driver's
 * order (malloc'd in *ret). */
int stats_read_dom(struct dom *d, char **ret, size_t *ret_len,
		   char **ret_error);

/* The contents of metrics/hvfs.prom: every source's domains in
 * Prometheus's text exposition format (malloc'd in *ret). */
int stats_prom(char **ret, size_t *ret_len);
