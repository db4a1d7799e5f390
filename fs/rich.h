/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * rich.c: the rich tree's files (qmp, cpus, memory, screen.png, query/NAME,
 * block/NAME/{info,stats}) and its family directories (query/, block/,
 * block/NAME/), whose names a per-domain table gives subs. The file table
 * (files.c) calls these; the meaning of QEMU's answers is lib/'s (hv.h).
 * Calls: dom, entry, names, lib/.
 */

#include "dom.h"
#include "entry.h"
#include "ino.h"

/* The largest command a write to `qmp` may carry (it must fit one write). */
#define RICH_QMP_MAX (64u << 10)

int rich_write_qmp(struct dom *d, const char *buf, size_t len, char **ret_reply,
		   size_t *ret_reply_len, char **ret_error);
int rich_read_cpus(struct dom *d, char **ret, size_t *ret_len,
		   char **ret_error);
int rich_read_memory(struct dom *d, char **ret, size_t *ret_len,
		     char **ret_error);
int rich_write_memory(struct dom *d, const char *buf, size_t len,
		      char **ret_reply, size_t *ret_reply_len,
		      char **ret_error);
int rich_read_screen(struct dom *d, char **ret, size_t *ret_len,
		     char **ret_error);
int rich_read_query(struct dom *d, const char *arg, char **ret, size_t *ret_len,
		    char **ret_error);
int rich_read_block_info(struct dom *d, const char *arg, char **ret,
			 size_t *ret_len, char **ret_error);
int rich_read_block_stats(struct dom *d, const char *arg, char **ret,
			  size_t *ret_len, char **ret_error);

/* Lookup and listing in query/, block/ and block/NAME/ (dir); -ENOTDIR for
 * other inodes. */
int rich_lookup(struct dom *d, fuse_ino_t dir, const char *name,
		fuse_ino_t *ret);
int rich_entries(struct dom *d, fuse_ino_t dir, struct entry **ret,
		 size_t *ret_n);
/*
 * The domain's name table, shared with snap.c (snapshots/NAME/): the sub
 * of name, added if new (or -ENOSPC, -ENOMEM); the name a sub stands for
 * (malloc'd), or NULL. Subs only grow and never change meaning.
 */
int rich_intern(struct dom *d, const char *name);
char *rich_sub_name(struct dom *d, unsigned sub);

/* files_check() for a family inode (query/NAME, block/NAME/...). */
int rich_check(struct dom *d, fuse_ino_t ino, char **ret_arg);
