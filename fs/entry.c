/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Directory listings, as readdir hands them out. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "entry.h"

void entries_free(struct entry *e, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(e[i].name);
	free(e);
}

int entries_add(struct entry **e, size_t *n, const char *name, fuse_ino_t ino,
		bool dir)
{
	struct entry *ne = reallocarray(*e, *n + 1, sizeof(**e));

	if (!ne)
		return -ENOMEM;
	*e = ne;
	ne[*n] = (struct entry){ .name = strdup(name), .ino = ino, .dir = dir };
	if (!ne[*n].name)
		return -ENOMEM;
	(*n)++;
	return 0;
}

int entries_find(const struct entry *e, size_t n, const char *name,
		 fuse_ino_t *ret)
{
	for (size_t i = 0; i < n; i++) {
		if (strcmp(e[i].name, name) == 0) {
			*ret = e[i].ino;
			return 0;
		}
	}
	return -ENOENT;
}

int entries_give(struct entry *e, size_t n, int r, struct entry **ret,
		 size_t *ret_n)
{
	if (r < 0) {
		entries_free(e, n);
		return r;
	}
	*ret = e;
	*ret_n = n;
	return 0;
}
