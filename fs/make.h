/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/*
 * make.c: the files that make domains, .define and .create at the level of
 * a host's domains (the root with one host, HOST/ with several): the whole
 * XML written through one open file, run on the host's libvirt source when
 * that file is closed (FLUSH), so close() returns libvirt's refusal. The
 * level's .error also shows the last refusal. Calls: tree, source, lib/.
 */

#include "hvfs.h"

struct host;

#define HVFS_TOP_DEFINE ".define"
#define HVFS_TOP_CREATE ".create"
/* The most one open file may collect; beyond it writes fail with EFBIG. */
#define MAKE_XML_MAX (1u << 20)

/*
 * Defines (create false: virsh define) or creates and starts (virsh create)
 * the domain of xml (len bytes, no NUL needed) on host h's libvirt source,
 * and refreshes h's listing so that the domain is in the tree on return.
 * 0, with the new domain's driver name in *ret_name (malloc'd; ret_name may
 * be NULL), or -errno with libvirt's message in *ret_error and in the
 * level's .error (-EOPNOTSUPP: h has no libvirt source).
 */
int make_domain(struct host *h, bool create, const char *xml, size_t len,
		char **ret_name, char **ret_error);

/* Whether h has .define and .create: it has a libvirt source. */
bool make_present(struct host *h);

/* The last refusal at h's level, "" when none (malloc'd). */
int make_errors(struct host *h, char **ret, size_t *ret_len);
