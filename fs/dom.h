/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * dom.c: one domain, its references and its facts (state, version, uuid,
 * the last error), cached while events keep them true. For a source that
 * delivers events the facts are fetched once and then kept true by events,
 * so a read costs what FUSE costs; without events every read asks the peer.
 * Calls: source, the log, lib/.
 *
 * A struct dom is made by the domain table (tree.c) and lives as long as a
 * reference: the table's, a lookup's (tree_find_*()), an open file's. Locks:
 * see tree.h; d->lock is taken after the tree lock and a handle's lock, and
 * nothing that takes another lock is called with it held.
 */

#include "hvfs.h"
#include "source.h"

struct dom {
	/* Immutable after creation. */
	uint64_t slot;       /* set by the table before anyone sees it */
	char *name;          /* the name in the tree: escaped, maybe NAME@label */
	char *hv_name;       /* the name the driver knows */
	struct source *src;

	/* Owned by the table (tree.c), guarded by the tree lock. */
	bool gone;           /* left the tree; kept alive by references only */
	bool prefetching;    /* in a prefetch batch */

	unsigned refs;       /* atomic: dom_ref(), dom_unref() */

	/* Guarded by lock. */
	pthread_mutex_t lock;
	uint64_t gen;        /* bumped whenever cached facts become unsure */
	uint64_t qemu_gen;   /* bumped whenever the QEMU process may change */
	/* A cache of a higher module (rich.c) and how to free it, set under
	 * lock by that module; freed with the domain. */
	void *ext;
	void (*ext_free)(void *ext);

	/* Private to dom.c. */
	char *error;         /* the last failure, as the error file shows it */
	uint64_t state_gen;  /* bumped at every change of state */
	uint64_t agent_gen;  /* bumped at every agent-lifecycle event */
	int64_t state_us;    /* when the state last changed (an event's time,
			      * else when hvfs learnt it); 0: not since */
	int64_t defined_us;  /* appeared in the tree, or last defined */
	bool state_known;
	bool state_ever;     /* a state was learnt once: later ones change it */
	enum hv_state state;
	char *version;       /* NULL: not known */
	char *uuid;          /* NULL: not known */
	struct fuse_pollhandle **watchers; /* pollers waiting for a change */
	size_t n_watchers;
	/* What its events files were last told, so that a domain that leaves
	 * always ends with its final state, then its leaving. */
	bool told_shutoff;   /* the last state line said shutoff */
	bool told_undefined; /* the last line was an undefined line */
};

/* A new domain with one reference (the caller's), or NULL. */
struct dom *dom_new(struct source *src, const char *hv_name, const char *name);
/* Adds a reference; returns d. */
struct dom *dom_ref(struct dom *d);
/* Drops a reference, freeing d with the last. Accepts NULL; returns NULL. */
struct dom *dom_unref(struct dom *d);

/* The connection of d's source, or NULL while it is not open. */
struct hv_conn *dom_conn(struct dom *d);
/* Whether d's driver is libvirt's (else direct QMP). */
bool dom_is_libvirt(struct dom *d);

/* Records a failure of `op` on d for its error file and logs it. */
void dom_set_error(struct dom *d, const char *op, int err, const char *msg);
/* The error file's contents (malloc'd, maybe ""), or NULL on ENOMEM. */
char *dom_error(struct dom *d);

int dom_state(struct dom *d, enum hv_state *ret, char **ret_error);
/* What a listing said of d, taken where nothing is known yet: the uuid, and
 * the state (not HV_STATE_NOSTATE) if d's source is evented. The caller
 * knows that no event about d came since the listing was asked. */
void dom_seed(struct dom *d, const char *uuid, enum hv_state s);
/* The state events (or a fetch) made known, without asking; false if none. */
bool dom_state_cached(struct dom *d, enum hv_state *ret);
int dom_version(struct dom *d, char **ret, char **ret_error);
int dom_uuid(struct dom *d, char **ret, char **ret_error);
/* Forgets every cached fact (the domain may be another process now). */
void dom_forget(struct dom *d);
/* Forgets the cached state: an action just changed it, and its event may
 * not have arrived yet. */
void dom_state_unsure(struct dom *d);
/* Records a new state from an event, which happened at us (microseconds
 * since the epoch, by the peer's clock; 0: not known), and wakes the
 * pollers. */
void dom_set_state(struct dom *d, enum hv_state s, int64_t us);
/* When the state last changed, as an event said (dom_set_state()), or 0. */
int64_t dom_state_time_us(struct dom *d);
/* Records that d was (re)defined at us (0: not known, nothing changes);
 * dom_defined_us() says when, or when d appeared in the tree. */
void dom_set_defined(struct dom *d, int64_t us);
int64_t dom_defined_us(struct dom *d);
/* Whether dom_version() / dom_uuid() would answer without asking. */
bool dom_version_cached(struct dom *d);
bool dom_uuid_cached(struct dom *d);
/* A copy of the version if hvfs knows it (never asks); NULL otherwise. */
char *dom_version_known(struct dom *d);
/*
 * Whether a fact dom_prefetch() fetches is not cached: the state; with
 * `version`, also the version of a running or paused QEMU (-o
 * kernel_cache asks it ahead, so that the first read of a kept version
 * costs no call).
 */
bool dom_needs_prefetch(struct dom *d, bool version);
/* Fetches those facts into the cache (errors ignored). Otherwise the uuid
 * and version are fetched when first read. */
void dom_prefetch(struct dom *d, bool version);
/* poll() on the state file: whether the state changed since `seen`; else
 * keeps ph (if any) to notify at the next change. */
bool dom_poll_state(struct dom *d, uint64_t seen, struct fuse_pollhandle *ph);
/* The count of state changes seen so far, for dom_poll_state(). */
uint64_t dom_state_gen(struct dom *d);
/* The same for guest/state: an agent-lifecycle event came (the pollers of
 * both files share one list; a wake without a change is re-polled). */
void dom_agent_changed(struct dom *d);
bool dom_poll_agent(struct dom *d, uint64_t seen, struct fuse_pollhandle *ph);
uint64_t dom_agent_gen(struct dom *d);
/* Drops pending pollers (the domain left). */
void dom_release_watchers(struct dom *d);

/*
 * Records what d's events files are told by ev; false (nothing recorded)
 * for a late word its readers must not get: the loss of d's own monitor
 * after d's leaving was told (the driver's reader and its watcher may
 * report one QEMU's end at once).
 */
bool dom_told(struct dom *d, const struct hv_event *ev);
/* What d's events files were told last: a shutoff state line, an undefined
 * line. */
void dom_told_last(struct dom *d, bool *ret_shutoff, bool *ret_undefined);
/* Whether d is known to be shut off while its events files were not told. */
bool dom_shutoff_untold(struct dom *d);
