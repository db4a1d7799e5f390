/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* mount.c: our mount, and no other. Calls nothing of fs/ but the log. */

#include "hvfs.h"

#define MOUNT_DEV_MAX 32
/* The device ("MAJ:MIN") of the mount at path, just made: 0 or -errno. */
int mount_identify(const char *path, char ret_dev[MOUNT_DEV_MAX]);
/* Whether the topmost mount at path is dev: only then may we unmount it. */
bool mount_is_ours(const char *path, const char *dev);
/* Makes fuse_session_unmount(se) free se's mount state without unmounting
 * (the mount at the path is not ours); ends our connection. */
void mount_disown(struct fuse_session *se);
/* Whether se's connection to the kernel still lives. */
bool mount_connected(struct fuse_session *se);
/* Ends se (waking the calling thread, which runs its loop) once no mount of
 * dev is left in this mount namespace (`fusermount3 -u` while another
 * namespace holds a copy). */
int mount_watch(struct fuse_session *se, const char *dev);
/* Stops mount_watch()'s watcher; before se is unmounted or destroyed. */
void mount_unwatch(void);
