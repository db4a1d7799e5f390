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
};

int tree_add_source(const char *uri, const char *label, char **ret_error);
void tree_free(void);

/* Re-reads every source's domain list and updates the table. */
int tree_refresh(void);

/* Lookups return a reference (dom_unref() it), or NULL. */
struct dom *tree_find_name(const char *name);
struct dom *tree_find_slot(uint64_t slot);
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
	FK_COUNT
};

struct file_type {
	const char *name;
	mode_t mode;         /* permission bits, before ctlgroup */
	/* Whether d has this file; NULL means always. */
	bool (*present)(struct dom *d);
	/* Makes the contents: *ret (malloc'd) and *ret_len, or -errno. */
	int (*read)(struct dom *d, char **ret, size_t *ret_len, char **ret_error);
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
