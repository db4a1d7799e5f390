/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * ops.c: the FUSE low-level operations, the top of fs/: maps inodes to the
 * file table (files), the top levels (top), the events files (events) and
 * the files that make domains (make: ops collects their XML), kept files
 * (kept). Calls: files, kept, top, make, events, tree, source, dom, entry,
 * the log.
 */

#include "hvfs.h"

extern const struct fuse_lowlevel_ops hvfs_ops;
