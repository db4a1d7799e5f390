/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * snap.c: a domain's snapshots/ (issue 16): one directory per snapshot
 * with xml (libvirt) or info (direct QMP), created, state, parent and
 * control; .current (libvirt); mkdir (or a write to .take, with options)
 * takes a snapshot, the snapshot's
 * control reverts to it or deletes it, rmdir never deletes (ops.c refuses
 * it, see docs/design.md). Every call reaches the peer through lib/ with
 * its deadline. Snapshot names are kept in the domain's name table
 * (rich.c), so an inode names one snapshot for the domain's whole life.
 * Calls: dom, tree, entry, names, rich, lib/.
 */

#include "dom.h"
#include "entry.h"
#include "ino.h"

/* Whether snap.c answers for the directories and families of this kind
 * (snapshots/, snapshots/NAME/ and its files); snapshots/'s fixed files
 * (.current, .take) are the file table's. */
bool snap_owns(unsigned kind);

/* Lookup and listing in snapshots/ and snapshots/NAME/ (dir). */
int snap_lookup(struct dom *d, fuse_ino_t dir, const char *name,
		fuse_ino_t *ret);
int snap_entries(struct dom *d, fuse_ino_t dir, struct entry **ret,
		 size_t *ret_n);
/* files_check() for snapshots/NAME/ and its files: *ret_arg is the
 * snapshot's name as the driver knows it. */
int snap_check(struct dom *d, fuse_ino_t ino, char **ret_arg);

/*
 * mkdir snapshots/NAME: takes snapshot NAME (the name as the tree shows
 * it, see name_escape()) and returns when it exists, with its directory's
 * inode in *ret; or -errno with the peer's message.
 */
int snap_mkdir(struct dom *d, const char *name, fuse_ino_t *ret,
	       char **ret_error);

/*
 * snapshots/.take: what one open file collects (run at its close, as
 * xml) takes a snapshot with options: its first line NAME (as for mkdir),
 * then lines `description TEXT` and `disk-only`. Reads list the option
 * words.
 */
#define SNAP_TAKE_MAX (64u << 10)
int snap_read_take(struct dom *d, char **ret, size_t *ret_len,
		   char **ret_error);
int snap_write_take(struct dom *d, const char *buf, size_t len,
		    char **ret_reply, size_t *ret_reply_len, char **ret_error);

/* snapshots/.current: "NAME\n", or empty when there is none. */
int snap_read_current(struct dom *d, char **ret, size_t *ret_len,
		      char **ret_error);

/* The files of snapshots/NAME/, for the snapshot arg (the driver's name). */
int snap_read_xml(struct dom *d, const char *arg, char **ret, size_t *ret_len,
		  char **ret_error);
int snap_read_info(struct dom *d, const char *arg, char **ret,
		   size_t *ret_len, char **ret_error);
int snap_read_created(struct dom *d, const char *arg, char **ret,
		      size_t *ret_len, char **ret_error);
int snap_read_state(struct dom *d, const char *arg, char **ret,
		    size_t *ret_len, char **ret_error);
int snap_read_parent(struct dom *d, const char *arg, char **ret,
		     size_t *ret_len, char **ret_error);
/* control: reads "revert\ndelete\n"; takes one of them. */
int snap_read_control(struct dom *d, const char *arg, char **ret,
		      size_t *ret_len, char **ret_error);
int snap_write_control(struct dom *d, const char *arg, const char *buf,
		       size_t len, char **ret_reply, size_t *ret_reply_len,
		       char **ret_error);
