/* SPDX-License-Identifier: GPL-2.0-or-later */
/* The levels above the domains: the root, host directories, .events and
 * .error (see top.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ino.h"
#include "make.h"
#include "stats.h"
#include "top.h"
#include "tree.h"

bool top_exists(fuse_ino_t ino)
{
	unsigned kind = ino_kind(ino);
	bool root = top_host(ino) < 0;

	if (ino_slot(ino) != 0)
		return false;
	if (ino == FUSE_ROOT_ID || kind == FK_EVENTS)
		return root || host_of_level(ino);
	if (kind == FK_DIR || kind == FK_ERROR)
		return host_of_level(ino) != NULL;
	if (kind == FK_DEFINE || kind == FK_CREATE)
		return make_present(host_of_level(ino));
	if (kind == FK_METRICS_DIR || kind == FK_METRICS)
		return ino == top_ino(-1, kind);
	return false;
}

int top_lookup(fuse_ino_t parent, const char *name, fuse_ino_t *ret)
{
	struct host *h;
	struct dom *d;

	if (!top_exists(parent))
		return -ENOENT;
	if (ino_kind(parent) == FK_METRICS_DIR) {
		if (strcmp(name, HVFS_TOP_PROM) != 0)
			return -ENOENT;
		*ret = top_ino(-1, FK_METRICS);
		return 0;
	}
	if (ino_kind(parent) != FK_DIR)
		return -ENOTDIR;
	if (parent == FUSE_ROOT_ID && strcmp(name, HVFS_TOP_METRICS) == 0) {
		*ret = top_ino(-1, FK_METRICS_DIR);
		return 0;
	}
	if (strcmp(name, HVFS_TOP_EVENTS) == 0) {
		*ret = top_ino(top_host(parent), FK_EVENTS);
		return 0;
	}
	h = host_of_level(parent);
	if (!h) {
		/* The root of several hosts: a host's directory. */
		for (size_t i = 0; i < hosts_count(); i++)
			if (strcmp(host_name(host_at(i)), name) == 0) {
				*ret = top_ino(host_index(host_at(i)), FK_DIR);
				return 0;
			}
		return -ENOENT;
	}
	if (strcmp(name, HVFS_TOP_ERROR) == 0) {
		*ret = top_ino(top_host(parent), FK_ERROR);
		return 0;
	}
	if (make_present(h) && (strcmp(name, HVFS_TOP_DEFINE) == 0 ||
				strcmp(name, HVFS_TOP_CREATE) == 0)) {
		*ret = top_ino(top_host(parent), name[1] == 'd' ? FK_DEFINE
							       : FK_CREATE);
		return 0;
	}
	d = tree_find_name(host_index(h), name);
	if (!d) {
		/* A source without events: perhaps it appeared since. */
		tree_refresh(host_index(h), true);
		d = tree_find_name(host_index(h), name);
	}
	if (!d)
		return -ENOENT;
	*ret = ino_make(d->slot, FK_DIR, 0);
	dom_unref(d);
	return 0;
}

int top_entries(fuse_ino_t dir, struct entry **ret, size_t *ret_n)
{
	struct host *h = host_of_level(dir);
	struct entry *e = NULL;
	size_t n = 0;
	int r = 0;

	if (!top_exists(dir) ||
	    (ino_kind(dir) != FK_DIR && ino_kind(dir) != FK_METRICS_DIR))
		return -ENOTDIR;
	if (ino_kind(dir) == FK_METRICS_DIR) {
		r = entries_add(&e, &n, HVFS_TOP_PROM, top_ino(-1, FK_METRICS),
				false);
	} else if (!h) {
		for (size_t i = 0; i < hosts_count() && !r; i++)
			r = entries_add(&e, &n, host_name(host_at(i)),
				      top_ino(host_index(host_at(i)), FK_DIR), true);
	} else {
		tree_refresh(host_index(h), true);
		r = tree_entries(host_index(h), &e, &n);
	}
	/* The level's own files, after the directories. */
	if (!r && dir == FUSE_ROOT_ID)
		r = entries_add(&e, &n, HVFS_TOP_METRICS,
			      top_ino(-1, FK_METRICS_DIR), true);
	if (!r && ino_kind(dir) == FK_DIR)
		r = entries_add(&e, &n, HVFS_TOP_EVENTS,
			      top_ino(top_host(dir), FK_EVENTS), false);
	if (!r && h && ino_kind(dir) == FK_DIR)
		r = entries_add(&e, &n, HVFS_TOP_ERROR,
			      top_ino(top_host(dir), FK_ERROR), false);
	if (!r && make_present(h))
		r = entries_add(&e, &n, HVFS_TOP_DEFINE,
			      top_ino(top_host(dir), FK_DEFINE), false);
	if (!r && make_present(h))
		r = entries_add(&e, &n, HVFS_TOP_CREATE,
			      top_ino(top_host(dir), FK_CREATE), false);
	return entries_give(e, n, r, ret, ret_n);
}

int top_read(fuse_ino_t ino, char **ret, size_t *ret_len)
{
	struct host *h = host_of_level(ino);

	char *made = NULL, *text;
	size_t made_len = 0;
	int r;

	if (ino == top_ino(-1, FK_METRICS))
		return stats_prom(ret, ret_len);
	if (!h || ino_kind(ino) != FK_ERROR)
		return -ENOENT;
	r = host_errors(h, ret, ret_len);
	if (r < 0 || (r = make_errors(h, &made, &made_len)) < 0 || !made_len) {
		free(made);
		return r;
	}
	text = realloc(*ret, *ret_len + made_len + 1);
	if (!text) {
		free(made);
		return -ENOMEM;
	}
	memcpy(text + *ret_len, made, made_len + 1);
	*ret = text;
	*ret_len += made_len;
	free(made);
	return 0;
}
