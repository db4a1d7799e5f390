/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * top.c: the levels above the domains (slot-0 inodes): the root, host
 * directories, and their own files .events, .error, .define and .create
 * (run by make.c); the root's metrics/hvfs.prom. Calls: tree, source,
 * stats, make, entry. -ENOENT for what does not exist.
 */

#include "entry.h"

/* The files of the levels above the domains: hidden from globs and plain
 * ls, and never a domain's name (those are escaped if they start with '.'). */
#define HVFS_TOP_EVENTS ".events"
#define HVFS_TOP_ERROR ".error"
/* The root's directory for node_exporter's textfile collector, and its one
 * file. */
#define HVFS_TOP_METRICS ".metrics"
#define HVFS_TOP_PROM "hvfs.prom"

int top_lookup(fuse_ino_t parent, const char *name, fuse_ino_t *ret);
int top_entries(fuse_ino_t dir, struct entry **ret, size_t *ret_n);
bool top_exists(fuse_ino_t ino);
/* The contents of a top-level file, made at open: .error (maybe ""; why
 * its sources are down, then the last .define/.create refusal) or
 * metrics/hvfs.prom (malloc'd). */
int top_read(fuse_ino_t ino, char **ret, size_t *ret_len);
