/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * ops.c: the FUSE low-level operations, the top of fs/: maps inodes to the
 * file table (files), the top levels (top) and the events files (events).
 * Calls: files, top, events, tree, dom, entry, the log.
 */

#include "hvfs.h"

extern const struct fuse_lowlevel_ops hvfs_ops;
