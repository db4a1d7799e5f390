/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * Shared declarations of the hvfs daemon: options, log, the domain table
 * (tree.c), the file table (files.c) and the FUSE operations (ops.c).
 *
 * Inode numbers encode where a node lives, so no inode table is needed:
 *   ino = slot << 24 | kind << 16 | sub
 * slot 0 is the mount's root level (the root itself is FUSE_ROOT_ID = 1);
 * every domain gets a slot from a counter that never goes back, so a stale
 * inode of a domain that left can never name another one. kind is an
 * enum file_kind (0: the domain's directory); sub is reserved for files
 * that come in families.
 */

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "hv.h"

#define HVFS_MAX_THREADS 128
#define HVFS_ENTRY_TIMEOUT 0.5
#define HVFS_ATTR_TIMEOUT 0.5
#define HVFS_ROOT_EVENTS ".events" /* hidden from globs and plain ls */

struct hvfs_options {
	int timeout_ms;      /* -o timeout=SECONDS */
	bool foreground;     /* -f */
	bool debug;          /* -d */
	bool allow_other;    /* -o allow_other: also turns on default_permissions */
	bool have_ctlgroup;  /* -o ctlgroup=NAME */
	gid_t ctlgroup;
};

/* Set once by main() before the session starts; read-only afterwards. */
extern struct hvfs_options hvfs_opts;

/* log.c: stderr in the foreground, syslog otherwise. */
void hvfs_log_init(bool foreground, bool debug);
void hvfs_log(int prio, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* ---- inode numbers ---- */

static inline fuse_ino_t ino_make(uint64_t slot, unsigned kind, unsigned sub)
{
	return (fuse_ino_t)(slot << 24 | (uint64_t)kind << 16 | sub);
}
static inline uint64_t ino_slot(fuse_ino_t ino) { return ino >> 24; }
static inline unsigned ino_kind(fuse_ino_t ino) { return (ino >> 16) & 0xff; }
static inline unsigned ino_sub(fuse_ino_t ino) { return ino & 0xffff; }

/* ---- tree.c: sources and domains ---- */

/* One -c / --qmp-dir / --qmp: a connection to a driver. */
struct source {
	char *label;         /* short name shown on clashes: "libvirt", "qmp", ... */
	struct hv_conn *conn;
	/* Set once at start: the driver delivers events, so cached facts stay
	 * true and the domain list changes only when an event says so. */
	bool evented;        /* atomic: false while the peer is lost */
	bool subscribed;     /* set once at start */
};

struct dom {
	/* Immutable after creation. */
	uint64_t slot;
	char *name;          /* the name in the tree: escaped, maybe NAME@label */
	char *hv_name;       /* the name the driver knows */
	struct source *src;

	/* Guarded by the tree lock. */
	unsigned refs;
	bool gone;           /* left the tree; kept alive by references only */

	/* Guarded by lock. */
	pthread_mutex_t lock;
	char *error;         /* the last failure, as the error file shows it */
	uint64_t gen;        /* bumped whenever cached facts become unsure */
	uint64_t state_gen;  /* bumped at every change of state */
	bool state_known;
	enum hv_state state;
	char *version;       /* NULL: not known */
	char *uuid;          /* NULL: not known */
	struct fuse_pollhandle **watchers; /* pollers waiting for a change */
	size_t n_watchers;
};

int tree_add_source(const char *uri, const char *label, char **ret_error);

/* Whether events keep s's facts true right now. */
bool source_evented(struct source *s);

/* Subscribes to every source's events; starts the tree's worker thread. */
int tree_start(struct fuse_session *se);
void tree_stop(void);
void tree_free(void);

/*
 * Re-reads the domain lists and updates the table; with `only_unevented`,
 * does nothing unless some source lacks events. Names that left the tree
 * are invalidated in the kernel's cache.
 */
int tree_refresh(bool only_unevented);

/* Asks the worker thread for a refresh and to fetch what is not cached. */
void tree_kick(void);

/* Lookups return a reference (dom_unref() it), or NULL. */
struct dom *tree_find_name(const char *name);
struct dom *tree_find_slot(uint64_t slot);
struct dom *tree_find_hv(struct source *src, const char *hv_name);
struct dom *dom_unref(struct dom *d);

/* A directory entry, as readdir hands it out. */
struct entry {
	char *name;
	fuse_ino_t ino;
	bool dir;
};

/* A snapshot of the domains in the tree, sorted by name. */
int tree_entries(struct entry **ret, size_t *ret_n);
void entries_free(struct entry *e, size_t n);

/* Records a failure of `op` on d for its error file and logs it. */
void dom_set_error(struct dom *d, const char *op, int err, const char *msg);

/* Escapes a name from a peer into one path component (see fs-layout.md). */
char *tree_escape_name(const char *name);

/* ---- dom.c: the facts of one domain, cached while events keep them true */

int dom_state(struct dom *d, enum hv_state *ret, char **ret_error);
int dom_version(struct dom *d, char **ret, char **ret_error);
int dom_uuid(struct dom *d, char **ret, char **ret_error);
/* Forgets every cached fact (the domain may be another process now). */
void dom_forget(struct dom *d);
/* Records a new state from an event and wakes the pollers. */
void dom_set_state(struct dom *d, enum hv_state s);
/* Fetches into the cache whatever is not there yet (errors ignored). */
void dom_prefetch(struct dom *d);
/* poll() on the state file: whether the state changed since `seen`; else
 * keeps ph (if any) to notify at the next change. */
bool dom_poll_state(struct dom *d, uint64_t seen, struct fuse_pollhandle *ph);
/* The count of state changes seen so far, for dom_poll_state(). */
uint64_t dom_state_gen(struct dom *d);
/* Drops pending pollers (the domain left). */
void dom_release_watchers(struct dom *d);

/* ---- events.c: event files ---- */

struct stream;
/* d NULL: every domain's events (the mount's .events file). */
struct stream *stream_open(struct dom *d);
void stream_release(struct stream *s);
void stream_read(fuse_req_t req, struct stream *s, size_t size, int flags);
unsigned stream_poll(struct stream *s, struct fuse_pollhandle *ph);
/* Hands an event to every open stream that wants it. */
void events_publish(struct dom *d, const char *domain_name,
		    const struct hv_event *ev);

/* ---- files.c: the files of a domain ---- */

enum file_kind {
	FK_DIR = 0,
	FK_STATE,
	FK_VERSION,
	FK_NAME,
	FK_UUID,
	FK_ID,
	FK_XML,
	FK_CONTROL,
	FK_ERROR,
	FK_EVENTS,
	FK_COUNT
};

struct file_type {
	const char *name;
	mode_t mode;         /* permission bits, before ctlgroup */
	/* Whether d has this file; NULL means always. */
	bool (*present)(struct dom *d);
	/* Makes the contents: *ret (malloc'd) and *ret_len, or -errno. */
	int (*read)(struct dom *d, char **ret, size_t *ret_len, char **ret_error);
	/* A stream (events): read by events.c, not through read(). */
	bool stream;
	/* Runs what was written; returns 0 or -errno. */
	int (*write)(struct dom *d, const char *buf, size_t len,
		     char **ret_error);
};

extern const struct file_type file_types[FK_COUNT];

/* The kind of a domain file called name, or -ENOENT. */
int file_kind_by_name(struct dom *d, const char *name);

/* The mode bits of a file of this kind, with ctlgroup applied. */
mode_t file_mode(enum file_kind kind);

/* ---- ops.c ---- */
extern const struct fuse_lowlevel_ops hvfs_ops;
