/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * source.c: the hosts and the sources of domains on them. A source is one
 * -c / --qmp-dir / --qmp: a connection to a driver. Every libvirt connection
 * is a host of its own; QMP sources join the local host. The sets of hosts
 * and sources are fixed by sources_open() and read without a lock
 * afterwards. Calls: names, the log, lib/.
 *
 * Locks: host.lock guards its sources' error and is taken last (nothing is
 * called with it held).
 */

#include "hvfs.h"

struct host;

#define SOURCE_LEFT_MAX 16

/* A domain as the last listing of its source that worked saw it. */
struct listed {
	char *hv_name;
	char *name;          /* escaped */
	char uuid[HV_UUID_STRLEN + 1]; /* "" if the driver gave none */
	enum hv_state state; /* as the listing said; HV_STATE_NOSTATE: unknown */
};

/* Names of domains events spoke of while a listing was asked, kept at most
 * (more: the listing seeds nothing). */
#define SOURCE_RACED_MAX 1024

struct source {
	char *uri;
	char *label;         /* short name shown on clashes: "libvirt", "qmp", ... */
	struct host *host;
	/* Private to source.c: read with source_conn(), source_evented(),
	 * source_subscribed(). */
	char *error;         /* guarded by host->lock: why it is down, or NULL */
	struct hv_conn *conn; /* NULL until opened, then fixed until
			       * sources_free() */
	/* Set while events keep the source's facts true, so cached facts stay
	 * true and its domain list changes only when an event says so. */
	bool evented;        /* atomic: false while the peer is lost */
	bool subscribed;     /* atomic */

	/* Owned by tree.c (the listings and the worker; see tree.h). */
	struct listed *listing;  /* guarded by the tree lock */
	size_t n_listing;
	/* Guarded by the tree lock: while a listing is asked (listing_open),
	 * the driver names of the domains events spoke of meanwhile (raced),
	 * whose facts the listing must not seed; raced_all: too many, or an
	 * event about the whole source. */
	bool listing_open;
	char **raced;
	size_t n_raced;
	bool raced_all;
	/* Driver names of the domains that left last, whose leaving the tree
	 * said: the peer's own late lines about them are not repeated. */
	char *left[SOURCE_LEFT_MAX]; /* guarded by the tree lock */
	unsigned left_next;
	pthread_mutex_t list_lock;  /* one listing at a time */
	int64_t failed_ms;   /* guarded by list_lock: when a listing last failed */
	pthread_t worker;
	bool worker_running;
	pthread_mutex_t kick_lock;
	pthread_cond_t kick_cond;
	bool kicked;
	/* Atomic, under list_lock: listings begun and ended, for
	 * tree_relist(). */
	uint64_t listings_begun, listings;
};

/* Records a source given on the command line (opened by sources_open()). */
int source_add(const char *uri, const char *label);

/*
 * Groups the sources into hosts and opens them, all at once. With one host,
 * a source that cannot be opened is an error; with several, it is retried
 * in the background (source_open()) and its host's .error says why.
 */
int sources_open(void);
/* Closes every connection (no driver thread delivers an event after it). */
void sources_close(void);
/* Frees the hosts and sources (after tree_free()). */
void sources_free(void);

size_t sources_count(void);
struct source *source_at(size_t k);

/* Opens s if it is not open: 0, or -errno with its host's .error set. */
int source_open(struct source *s);
/* The source's connection, or NULL while it is not open. */
struct hv_conn *source_conn(struct source *s);
/* Whether events keep s's facts true right now. */
bool source_evented(struct source *s);
void source_set_evented(struct source *s, bool on);
/* Whether s has subscribed to its driver's events (for good). */
bool source_subscribed(struct source *s);
void source_set_subscribed(struct source *s);
/*
 * Sets (op non-NULL) or clears why s is unreachable, as its host's .error
 * shows it, and logs the change: a source that stays down is not logged
 * again at every retry.
 */
void source_set_error(struct source *s, const char *op, int err,
		      const char *msg);

/* Whether the root holds one directory per host. */
bool hosts_multi(void);
size_t hosts_count(void);
struct host *host_at(size_t i);
/* A host's directory name (escaped); its position in the order given. */
const char *host_name(const struct host *h);
int host_index(const struct host *h);
/* The level of the tree a host's domains are in: -1 (the root) or h. */
int host_level(const struct host *h);
/* The host whose domains are at the level of the slot-0 inode ino, or
 * NULL (the root of several hosts). */
struct host *host_of_level(fuse_ino_t ino);
/* The contents of a host's .error file (malloc'd, maybe ""). */
int host_errors(struct host *h, char **ret, size_t *ret_len);
