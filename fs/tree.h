/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * tree.c: the domain table (which domains the tree shows, under which names
 * and slots), the sources' listings, and a worker per source that opens it,
 * re-lists it, prefetches facts and retries with backoff. Calls: kept, dom,
 * source, entry, names, the log, lib/. What it tells higher modules (a
 * domain's events, a domain's end) goes through the listener that main.c
 * sets before tree_start().
 *
 * Lock order (the one place it is written; every lock of fs/ is here):
 *
 *   source.list_lock -> tell_lock -> tree_lock -> dom.lock
 *   tell_lock (tree.c: events decided and told one at a time) is held
 *   while the listener runs
 *   handle.lock (ops.c) -> dom.lock
 *   prefetch_lock, source.kick_lock, host.lock, streams_lock (events.c),
 *   followers_lock and open_lock (ops.c): leaves, nothing taken inside
 *
 * A lock on the left may be held while one on its right is taken, never
 * the other way. Kernel invalidations run with no lock of this file held
 * (the kernel may call us back meanwhile); events listeners run with
 * tell_lock only.
 */

#include "dom.h"
#include "entry.h"
#include "source.h"

/* What the table tells the module above it (events.c), on the thread that
 * learnt it, with no table lock held. */
struct tree_listener {
	/* An event of src about d (NULL: a domain not in the tree, then
	 * name is its escaped driver name, or NULL for the connection). */
	void (*event)(struct source *src, struct dom *d, const char *name,
		      const struct hv_event *ev);
	/* The domain in slot left the tree (or took another name). */
	void (*domain_end)(uint64_t slot);
};

/* Before tree_start(); l must live until tree_stop(). */
void tree_set_listener(const struct tree_listener *l);

/* Subscribes to every source's events, lists and prefetches; starts the
 * workers. se is for invalidations. */
int tree_start(struct fuse_session *se);
void tree_stop(void);
/* Closes the sources and frees the table (sources_free() follows). */
void tree_free(void);

/*
 * Re-reads the domain lists of host (-1: every host) and updates the table;
 * with `only_unevented`, only of sources that lack events. Names that left
 * the tree are invalidated in the kernel's cache.
 */
void tree_refresh(int host, bool only_unevented);

/* Asks every source's worker for a refresh and to fetch what is not cached. */
void tree_kick(void);

/* Lookups return a reference (dom_unref() it), or NULL. */
struct dom *tree_find_name(int host, const char *name);
struct dom *tree_find_slot(uint64_t slot);
struct dom *tree_find_hv(struct source *src, const char *hv_name);
/* Appends the directories of host's domains to *e (see entries_add()). */
int tree_entries(int host, struct entry **e, size_t *n);
/*
 * Has d's source listed again (by its worker) and waits for that listing,
 * until deadline_ms (CLOCK_MONOTONIC, ms). Returns whether d is still in
 * the tree.
 */
bool tree_relist(struct dom *d, int64_t deadline_ms);
/*
 * Makes the kernel ask again for the attributes of d's directory and of its
 * files whose size and time change with what hvfs learns (ops.c's
 * fill_attr()): at each event, and when a read or a verb learnt a fact.
 * With -o kernel_cache, also drops the entries of d's kept files
 * (kept_drop()), whose value may be another now, and waits for that (at
 * most 0.1 s): the caller must hold no lock that a lookup takes
 * (tree_lock, a dom's lock).
 */
void tree_inval_attrs(struct dom *d);
/* dom_state_unsure(), then tree_inval_attrs(): the next read asks. */
void tree_state_unsure(struct dom *d);
/* The directory a domain's directory is in. */
fuse_ino_t tree_parent_of(struct dom *d);

/* Tells the kernel to forget the entry name in directory parent (a thing
 * that is gone). Call with no lock held. */
void tree_forget_entry(fuse_ino_t parent, const char *name);
