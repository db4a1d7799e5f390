/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The tests' real Linux guest for C tests (tests/guest/build.sh; the Python
 * side is tests/fs/guest.py): where its vmlinux and initrd are, and its
 * kernel command line. $HVFS_GUEST_DIR holds them when set and built (as
 * tests/run.sh does); else build.sh ($HVFS_GUEST_BUILD, set by meson)
 * builds or takes them from its cache into $HVFS_GUEST_OUT.
 */

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define GUEST_READY "hvfs-guest ready"

static inline void guest_files(char *vmlinux, char *initrd, size_t size)
{
	const char *d = getenv("HVFS_GUEST_DIR");
	char path[512], cmd[1200];

	snprintf(path, sizeof(path), "%s/initrd", d ? d : "");
	if (!d || access(path, R_OK) != 0) {
		const char *sh = getenv("HVFS_GUEST_BUILD");

		d = getenv("HVFS_GUEST_OUT");
		if (!sh || !d) {
			fprintf(stderr, "HVFS_GUEST_BUILD/HVFS_GUEST_OUT unset\n");
			exit(1);
		}
		snprintf(cmd, sizeof(cmd), "sh '%s' '%s' >/dev/null", sh, d);
		if (system(cmd) != 0) {
			fprintf(stderr, "%s failed\n", cmd);
			exit(1);
		}
	}
	snprintf(vmlinux, size, "%s/vmlinux", d);
	snprintf(initrd, size, "%s/initrd", d);
}

/* The kernel command line of guest NAME (as guest.py's cmdline()). */
static inline void guest_cmdline(const char *name, char *buf, size_t size)
{
	snprintf(buf, size, "console=ttyS0 quiet panic=-1 hvfs.hostname=%s "
		 "hvfs.ip=10.0.2.15/24", name);
}
