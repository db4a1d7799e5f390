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
#define HVFS_MALLOC_ARENAS 2
#define HVFS_LOG_DIR "/run/hvfs" /* logs when there is no syslog */
#define HVFS_ENTRY_TIMEOUT 0.5
#define HVFS_ATTR_TIMEOUT 0.5
/* The files of the levels above the domains: hidden from globs and plain
 * ls, and never a domain's name (those are escaped if they start with '.'). */
#define HVFS_TOP_EVENTS ".events"
#define HVFS_TOP_ERROR ".error"

struct hvfs_options {
	int timeout_ms;      /* -o timeout=SECONDS */
	bool foreground;     /* -f */
	bool debug;          /* -d */
	bool allow_other;    /* -o allow_other: also turns on default_permissions */
	bool nonempty;       /* -o nonempty: may mount over files or a mount */
	const char *logfile; /* -o logfile=PATH */
	bool have_ctlgroup;  /* -o ctlgroup=NAME */
	gid_t ctlgroup;
};

/* Set once by main() before the session starts; read-only afterwards. */
extern struct hvfs_options hvfs_opts;

/*
 * log.c: stderr in the foreground; in the background syslog, or the file
 * hvfs_log_file() opened (appended to, one time-stamped line a message).
 */
void hvfs_log_init(bool foreground, bool debug);
/* Logs to path from the next hvfs_log_init(false, ...) on; or -errno. */
int hvfs_log_file(const char *path);
void hvfs_log(int prio, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* ---- mount.c: our mount, and no other ---- */

#define MOUNT_DEV_MAX 32
/* The device ("MAJ:MIN") of the mount at path, just made: 0 or -errno. */
int mount_identify(const char *path, char ret_dev[MOUNT_DEV_MAX]);
/* Whether the topmost mount at path is dev: only then may we unmount it. */
bool mount_is_ours(const char *path, const char *dev);
/* Makes fuse_session_unmount(se) free se's mount state without unmounting
 * (the mount at the path is not ours); ends our connection. */
void mount_disown(struct fuse_session *se);
/* Whether se's connection to the kernel still lives. */
bool mount_connected(struct fuse_session *se);
/* Ends se (waking the calling thread, which runs its loop) once no mount of
 * dev is left in this mount namespace (`fusermount3 -u` while another
 * namespace holds a copy). */
int mount_watch(struct fuse_session *se, const char *dev);

/* ---- inode numbers ---- */

static inline fuse_ino_t ino_make(uint64_t slot, unsigned kind, unsigned sub)
{
	return (fuse_ino_t)(slot << 24 | (uint64_t)kind << 16 | sub);
}
static inline uint64_t ino_slot(fuse_ino_t ino) { return ino >> 24; }
static inline unsigned ino_kind(fuse_ino_t ino) { return (ino >> 16) & 0xff; }
static inline unsigned ino_sub(fuse_ino_t ino) { return ino & 0xffff; }

/* ---- tree.c: hosts, sources and domains ---- */

/*
 * Slot 0 holds what is above the domains: the mount's root and, with several
 * hosts, one directory per host. Its sub says whose: 0 the root, 2 + h host h
 * (1 is skipped: kind 0, sub 1 is FUSE_ROOT_ID, the root directory).
 */
static inline fuse_ino_t top_ino(int host, unsigned kind)
{
	if (host < 0)
		return kind == 0 ? FUSE_ROOT_ID : ino_make(0, kind, 0);
	return ino_make(0, kind, 2 + (unsigned)host);
}
/* The host of a slot-0 inode, or -1 for the mount's root level. */
static inline int top_host(fuse_ino_t ino)
{
	return ino == FUSE_ROOT_ID || ino_sub(ino) < 2 ? -1
						       : (int)ino_sub(ino) - 2;
}

/* One hypervisor host: a libvirt connection, and the QMP sources on it. */
struct host {
	char *name;          /* its directory's name (escaped) */
	int index;           /* position in the order given */
	pthread_mutex_t lock; /* guards its sources' error */
};

/* A domain as the last listing of its source that worked saw it. */
struct listed {
	char *hv_name;
	char *name;          /* escaped */
};

#define SOURCE_LEFT_MAX 16

/* One -c / --qmp-dir / --qmp: a connection to a driver. */
struct source {
	char *uri;
	char *label;         /* short name shown on clashes: "libvirt", "qmp", ... */
	struct host *host;
	char *error;         /* guarded by host->lock: why it is down, or NULL */
	/* NULL until opened (a host that was unreachable at start), then
	 * fixed until tree_free(): read it with source_conn(). */
	struct hv_conn *conn;
	/* Set while events keep the source's facts true, so cached facts stay
	 * true and its domain list changes only when an event says so. */
	bool evented;        /* atomic: false while the peer is lost */
	bool subscribed;     /* atomic */

	/* Guarded by the tree lock. */
	struct listed *listing;
	size_t n_listing;
	/* Driver names of the domains that left last, whose leaving the tree
	 * said: the peer's own late lines about them are not repeated. */
	char *left[SOURCE_LEFT_MAX];
	unsigned left_next;

	/* One listing at a time. */
	pthread_mutex_t list_lock;
	int64_t failed_ms;   /* guarded by list_lock: when a listing last failed */

	/* Its worker: opens, refreshes, prefetches, retries with backoff. */
	pthread_t worker;
	bool worker_running;
	pthread_mutex_t kick_lock;
	pthread_cond_t kick_cond;
	bool kicked;
	/* Atomic, under list_lock: listings begun and ended, for
	 * tree_relist(). */
	uint64_t listings_begun, listings;
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
	bool prefetching;    /* in a prefetch batch (tree.c) */

	/* Guarded by lock. */
	pthread_mutex_t lock;
	char *error;         /* the last failure, as the error file shows it */
	uint64_t gen;        /* bumped whenever cached facts become unsure */
	uint64_t state_gen;  /* bumped at every change of state */
	bool state_known;
	enum hv_state state;
	char *version;       /* NULL: not known */
	char *uuid;          /* NULL: not known */
	uint64_t qemu_gen;   /* bumped whenever the QEMU process may change */
	struct rich *rich;   /* rich.c's cache (query/, block/ names) */
	struct fuse_pollhandle **watchers; /* pollers waiting for a change */
	size_t n_watchers;
	/* What its events files were last told (tree.c), so that a domain that
	 * leaves always ends with its final state, then its leaving. */
	bool told_shutoff;   /* the last state line said shutoff */
	bool told_undefined; /* the last line was an undefined line */
};

/* Records a source given on the command line (opened by tree_open()). */
int tree_add_source(const char *uri, const char *label);

/*
 * Groups the sources into hosts and opens them. With one host, a source
 * that cannot be opened is an error; with several, it is retried in the
 * background and its host's .error says why.
 */
int tree_open(void);

/* Whether the root holds one directory per host. */
bool tree_multi_host(void);

/* The source's connection, or NULL while it is not open. */
struct hv_conn *source_conn(struct source *s);

/* Whether events keep s's facts true right now. */
bool source_evented(struct source *s);

/* Subscribes to every source's events; starts the workers. */
int tree_start(struct fuse_session *se);
void tree_stop(void);
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
/*
 * Has d's source listed again (by its worker) and waits for that listing,
 * until deadline_ms (CLOCK_MONOTONIC, ms). Returns whether d is still in
 * the tree.
 */
bool tree_relist(struct dom *d, int64_t deadline_ms);
/* CLOCK_MONOTONIC in milliseconds. */
int64_t tree_now_ms(void);
struct dom *dom_unref(struct dom *d);

/* A directory entry, as readdir hands it out. */
struct entry {
	char *name;
	fuse_ino_t ino;
	bool dir;
};
void entries_free(struct entry *e, size_t n);
/* Appends a copy of name to the array *e of *n entries. */
int entries_add(struct entry **e, size_t *n, const char *name, fuse_ino_t ino,
		bool dir);

/*
 * The levels above the domains (slot-0 inodes): the root, host directories,
 * and their own files .events and .error. -ENOENT for what does not exist.
 */
int tree_top_lookup(fuse_ino_t parent, const char *name, fuse_ino_t *ret);
int tree_top_entries(fuse_ino_t dir, struct entry **ret, size_t *ret_n);
bool tree_top_exists(fuse_ino_t ino);
/* The contents of a top-level .error file (malloc'd, maybe ""). */
int tree_top_error(fuse_ino_t ino, char **ret, size_t *ret_len);
/* The directory a domain's directory is in. */
fuse_ino_t tree_parent_of(struct dom *d);

/* Records a failure of `op` on d for its error file and logs it. */
void dom_set_error(struct dom *d, const char *op, int err, const char *msg);

/* Escapes a name from a peer into one path component (see fs-layout.md). */
char *tree_escape_name(const char *name);

/* ---- dom.c: the facts of one domain, cached while events keep them true */

int dom_state(struct dom *d, enum hv_state *ret, char **ret_error);
/* The state events (or a fetch) made known, without asking; false if none. */
bool dom_state_cached(struct dom *d, enum hv_state *ret);
int dom_version(struct dom *d, char **ret, char **ret_error);
int dom_uuid(struct dom *d, char **ret, char **ret_error);
/* Forgets every cached fact (the domain may be another process now). */
void dom_forget(struct dom *d);
/* Forgets the cached state: an action just changed it, and its event may
 * not have arrived yet. */
void dom_state_unsure(struct dom *d);
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
/* d NULL: every domain's events of host (-1: of every host). */
struct stream *stream_open(struct dom *d, int host);
void stream_release(struct stream *s);
/* With nothing queued: end-of-file if eof_when_empty, else EAGAIN with
 * O_NONBLOCK in flags, else the read waits for the next line. */
void stream_read(fuse_req_t req, struct stream *s, size_t size, int flags,
		 bool eof_when_empty);
/* When the last event was published (microseconds since the epoch), or 0;
 * the bytes of all events lines made so far. */
int64_t events_last_us(void);
uint64_t events_published_bytes(void);
unsigned stream_poll(struct stream *s, struct fuse_pollhandle *ph);
/* Hands an event of src (about d, if known) to every stream that wants it. */
void events_publish(struct source *src, struct dom *d, const char *domain_name,
		    const struct hv_event *ev);
/* Ends the events files of the domain in slot (it left the tree): their
 * readers get what is queued, then end of file. */
void events_end_domain(uint64_t slot);

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
	/* The rich tree (rich.c). */
	FK_QMP,
	FK_CPUS,
	FK_MEMORY,
	FK_SCREEN,
	FK_QUERY_DIR,
	FK_BLOCK_DIR,
	/* Families: sub is the index of a name in the domain's rich.c table. */
	FK_QUERY,            /* query/NAME */
	FK_BLOCK_DEV,        /* block/NAME/ */
	FK_BLOCK_INFO,       /* block/NAME/info */
	FK_BLOCK_STATS,      /* block/NAME/stats */
	FK_COUNT
};

struct file_type {
	const char *name;
	mode_t mode;         /* permission bits, before ctlgroup: by what a
			      * file reveals (docs/fs-layout.md, "Modes") */
	/* Whether d has this file; NULL means always. */
	bool (*present)(struct dom *d);
	/* Makes the contents: *ret (malloc'd) and *ret_len, or -errno. */
	int (*read)(struct dom *d, char **ret, size_t *ret_len, char **ret_error);
	/* A stream (events): read by events.c, not through read(). */
	bool stream;
	/* Runs what was written; returns 0 or -errno. An `exchange` file
	 * (qmp) also returns a reply, which reads of that open file give. */
	int (*write)(struct dom *d, const char *buf, size_t len,
		     char **ret_reply, size_t *ret_reply_len,
		     char **ret_error);
	bool exchange;
	bool dir;            /* a directory below the domain's (query/, ...) */
	bool family;         /* named by sub, not by .name (rich.c) */
	/* The contents of a family file, for the name its sub stands for. */
	int (*read_arg)(struct dom *d, const char *arg, char **ret,
			size_t *ret_len, char **ret_error);
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

/* Whether inodes of this kind are directories. */
static inline bool file_kind_is_dir(unsigned kind)
{
	return kind == FK_DIR || (kind < FK_COUNT && file_types[kind].dir);
}

/* ---- rich.c: qmp, query/, block/, cpus, memory, screen.png ---- */

/*
 * Lookup and listing in the rich tree's directories (query/, block/,
 * block/NAME/); `dir` is such a directory's inode, or the domain's own for
 * rich_entries(), which lists every file of the domain's directory.
 */
int rich_lookup(struct dom *d, fuse_ino_t dir, const char *name,
		fuse_ino_t *ret);
int rich_entries(struct dom *d, fuse_ino_t dir, struct entry **ret,
		 size_t *ret_n);
/*
 * Whether ino still names something of d: 0, with the name a family's sub
 * stands for in *ret_arg (malloc'd; NULL for other kinds; ret_arg may be
 * NULL), or -ENOENT. A sub never changes meaning, so a stale inode can only
 * be missing, never another thing.
 */
int rich_check(struct dom *d, fuse_ino_t ino, char **ret_arg);
/* Frees d's rich.c state (the domain is being freed). */
void rich_release(struct dom *d);

/* ---- ops.c ---- */
extern const struct fuse_lowlevel_ops hvfs_ops;
