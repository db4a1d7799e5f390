/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * kept.c: the kept files of -o kernel_cache. `state` and `version` of a
 * source with events, while hvfs knows their value, have one inode per
 * value (sub is 1 + the value's index; sub 0 is the plain, direct_io
 * file), so the kernel may keep their pages: a kept inode's contents never
 * change, and a change of value gives the name another inode
 * (tree_inval_attrs() drops the old entry). Calls: dom, source, and
 * the kernel (FUSE notifications).
 */

#include "dom.h"
#include "ino.h"

/* The inode `kind` of d has now: kept, or plain while the value is not. */
fuse_ino_t kept_ino(struct dom *d, unsigned kind);
/* Whether ino is a kept inode. */
bool kept_is(fuse_ino_t ino);
/* The contents a kept inode stands for, malloc'd: 0, -ENOENT, -ENOMEM. */
int kept_read(fuse_ino_t ino, char **ret, size_t *ret_len);
/* Whether a kept inode's value is still d's value. */
bool kept_current(struct dom *d, fuse_ino_t ino);

/*
 * Makes the kernel forget the entries `state` and `version` of the domain
 * in slot (their value may have another inode now); returns once done, or
 * after at most KEPT_DROP_WAIT_MS (see kept.c). Nothing before
 * kept_start() (a thread of its own, with -o kernel_cache) or after
 * kept_stop().
 */
int kept_start(struct fuse_session *se);
void kept_stop(void);
void kept_drop(uint64_t slot);
