/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * files.c: the files of a domain: one table entry per kind of file, with
 * the function that makes its contents or runs what is written to it; and
 * lookups and listings of a domain's directories (the rich tree's own
 * directories, query/ and block/, through rich.c; snapshots/ through
 * snap.c; guest/'s files are guest.c's; a kept file's inode is kept.c's).
 * Calls: rich, snap, guest, stats, life, tree, kept, dom, entry, lib/.
 */

#include "dom.h"
#include "entry.h"
#include "ino.h"

struct file_type {
	const char *name;
	mode_t mode;         /* permission bits, before ctlgroup: by what a
			      * file reveals (docs/fs-layout.md, "Modes") */
	/* Whether d has this file; NULL means always. */
	bool (*present)(struct dom *d);
	/* Makes the contents: *ret (malloc'd) and *ret_len, or -errno. */
	int (*read)(struct dom *d, char **ret, size_t *ret_len, char **ret_error);
	/* Whether read() would answer from facts events keep true, without
	 * asking a peer: then st_size is the contents' size (else 0). */
	bool (*known)(struct dom *d);
	/* A stream (events): read by events.c, not through read(). */
	bool stream;
	/* Runs what was written; returns 0 or -errno. An `exchange` file
	 * (qmp) also returns a reply, which reads of that open file give. */
	int (*write)(struct dom *d, const char *buf, size_t len,
		     char **ret_reply, size_t *ret_reply_len,
		     char **ret_error);
	bool exchange;
	/* write gets the whole file, collected by ops.c from the writes of
	 * one open file and run once at its close (xml). */
	bool whole;
	bool dir;            /* a directory below the domain's (query/, ...) */
	bool family;         /* named by sub, not by .name (rich.c) */
	/* The directory that holds a fixed-name file: 0 (FK_DIR) the
	 * domain's own, or FK_GUEST_DIR. */
	unsigned char parent;
	bool top;            /* the mount root's, never a domain's: made at open
			      * by top_read() */
	/* The contents of a family file, for the name its sub stands for. */
	int (*read_arg)(struct dom *d, const char *arg, char **ret,
			size_t *ret_len, char **ret_error);
	/* What a write to a family file runs, for that name. */
	int (*write_arg)(struct dom *d, const char *arg, const char *buf,
			 size_t len, char **ret_reply, size_t *ret_reply_len,
			 char **ret_error);
	/* A directory in which mkdir makes something (snapshots/). */
	bool makes;
};

extern const struct file_type file_types[FK_COUNT];

/* The kind of a domain file called name, or -ENOENT. */
int file_kind_by_name(struct dom *d, const char *name);

/*
 * Whether the -o ctlgroup group owns files of this kind, with the owner's
 * bits: files one may write, and files only root may read (see the table
 * in files.c). Never without ctlgroup.
 */
bool file_ctlgroup(enum file_kind kind);

/* The mode bits of a file (or directory) of this kind, with ctlgroup
 * applied. */
mode_t file_mode(enum file_kind kind);

/* Whether files of this kind take writes. */
static inline bool file_kind_writable(unsigned kind)
{
	return kind < FK_COUNT &&
	       (file_types[kind].write || file_types[kind].write_arg);
}

/* Whether inodes of this kind are directories. */
static inline bool file_kind_is_dir(unsigned kind)
{
	return kind == FK_DIR || (kind < FK_COUNT && file_types[kind].dir);
}

/*
 * Lookup and listing in a domain's directories (its own, query/, block/,
 * block/NAME/): -ENOTDIR for an inode that is no directory.
 */
int files_lookup(struct dom *d, fuse_ino_t dir, const char *name,
		 fuse_ino_t *ret);
int files_entries(struct dom *d, fuse_ino_t dir, struct entry **ret,
		  size_t *ret_n);
/*
 * mkdir name in directory dir of d: 0 with the new directory's inode in
 * *ret, or -errno (-EPERM where mkdir makes nothing) with the peer's
 * message in *ret_error.
 */
int files_mkdir(struct dom *d, fuse_ino_t dir, const char *name,
		fuse_ino_t *ret, char **ret_error);

/*
 * Whether ino still names something of d: 0, with the name a family's sub
 * stands for in *ret_arg (malloc'd; NULL for other kinds; ret_arg may be
 * NULL), or -ENOENT. A sub never changes meaning, so a stale inode can only
 * be missing, never another thing.
 */
int files_check(struct dom *d, fuse_ino_t ino, char **ret_arg);
