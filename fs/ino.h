/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * Inode numbers (no module: definitions only). They encode where a node
 * lives, so no inode table is needed:
 *   ino = slot << 24 | kind << 16 | sub
 * slot 0 is the mount's root level (the root itself is FUSE_ROOT_ID = 1);
 * every domain gets a slot from a counter that never goes back, so a stale
 * inode of a domain that left can never name another one. kind is an
 * enum file_kind (0: the domain's directory); sub is reserved for files
 * that come in families.
 */

#include "hvfs.h"

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
	/* guest/ (guest.c): fixed names, parent FK_GUEST_DIR. */
	FK_GUEST_DIR,
	FK_GUEST_STATE,
	FK_GUEST_HOSTNAME,
	FK_GUEST_OS,
	FK_GUEST_INTERFACES,
	FK_GUEST_ADDRESSES,
	FK_GUEST_USERS,
	FK_GUEST_FILESYSTEMS,
	FK_GUEST_TIME,
	FK_GUEST_EXEC,
	FK_GUEST_AGENT,
	FK_GUEST_CONTROL,
	/* A domain's life (life.c). */
	FK_AUTOSTART,
	FK_VCPUS,
	/* The files that make domains, above the domains (make.c). */
	FK_DEFINE,           /* .define */
	FK_CREATE,           /* .create */
	FK_STATS,            /* stats (stats.c) */
	/* The mount's root only (top.c). */
	FK_METRICS_DIR,      /* metrics/ */
	FK_METRICS,          /* metrics/hvfs.prom */
	/* snapshots/ (snap.c): the directory and .current, fixed; then a
	 * family whose sub is the index of a snapshot's name in the
	 * domain's table (rich.c's, shared). */
	FK_SNAP_DIR,         /* snapshots/ */
	FK_SNAP_CURRENT,     /* snapshots/.current */
	FK_SNAP_TAKE,        /* snapshots/.take */
	FK_SNAP,             /* snapshots/NAME/ */
	FK_SNAP_XML,         /* snapshots/NAME/xml (libvirt) */
	FK_SNAP_INFO,        /* snapshots/NAME/info (direct QMP) */
	FK_SNAP_CREATED,     /* snapshots/NAME/created */
	FK_SNAP_STATE,       /* snapshots/NAME/state */
	FK_SNAP_PARENT,      /* snapshots/NAME/parent */
	FK_SNAP_CONTROL,     /* snapshots/NAME/control */
	FK_CONSOLE,          /* console (console.c) */
	FK_COUNT
};

static inline fuse_ino_t ino_make(uint64_t slot, unsigned kind, unsigned sub)
{
	return (fuse_ino_t)(slot << 24 | (uint64_t)kind << 16 | sub);
}
static inline uint64_t ino_slot(fuse_ino_t ino) { return ino >> 24; }
static inline unsigned ino_kind(fuse_ino_t ino) { return (ino >> 16) & 0xff; }
static inline unsigned ino_sub(fuse_ino_t ino) { return ino & 0xffff; }

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
