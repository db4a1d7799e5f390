/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* entry.c: directory listings, as readdir hands them out. Calls nothing of
 * fs/. */

#include "hvfs.h"

struct entry {
	char *name;
	fuse_ino_t ino;
	bool dir;
};

/* Frees n entries and the array; accepts NULL. */
void entries_free(struct entry *e, size_t n);
/* Appends a copy of name to the array *e of *n entries: 0 or -ENOMEM. */
int entries_add(struct entry **e, size_t *n, const char *name, fuse_ino_t ino,
		bool dir);
/* Ends making a listing: on r == 0 hands e and n over to *ret and *ret_n,
 * else frees them. Returns r. */
int entries_give(struct entry *e, size_t n, int r, struct entry **ret,
		 size_t *ret_n);
/* The inode of the entry called name: 0, or -ENOENT. */
int entries_find(const struct entry *e, size_t n, const char *name,
		 fuse_ino_t *ret);
