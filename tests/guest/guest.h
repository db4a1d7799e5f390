/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The tests' real Linux guest for C tests (tests/guest/build.sh; the Python
 * side is tests/fs/guest.py): where its vmlinux and initrd are, and its
 * kernel command line. $HVFS_GUEST_DIR holds them when set and built (as
 * tests/run.sh does); else build.sh ($HVFS_GUEST_BUILD, set by meson)
 * builds or takes them from its cache into $HVFS_GUEST_OUT.
 */

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "hv.h"

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

/*
 * guest-network-get-interfaces' return without what moves between two
 * reads: the counters, and the global IPv6 addresses that SLAAC (QEMU's
 * user network) adds at some point after boot. Edits and returns ifaces.
 */
static inline json_object *guest_ifaces_stable(json_object *ifaces)
{
	for (size_t i = 0; ifaces && i < json_object_array_length(ifaces); i++) {
		json_object *ifc = json_object_array_get_idx(ifaces, i), *a;

		json_object_object_del(ifc, "statistics");
		if (!json_object_object_get_ex(ifc, "ip-addresses", &a))
			continue;
		for (size_t k = json_object_array_length(a); k-- > 0;) {
			json_object *ip = NULL;

			json_object_object_get_ex(json_object_array_get_idx(a, k),
						  "ip-address", &ip);
			if (!strncmp(json_object_get_string(ip), "fec0:", 5))
				json_object_array_del_idx(a, k, 1);
		}
	}
	return ifaces;
}

/* The last "agent-lifecycle" event's data, for the domain named by the
 * handler's userdata (a const char *). */
static struct {
	pthread_mutex_t lock;
	char last[64];
} guest_agent_ev = { .lock = PTHREAD_MUTEX_INITIALIZER };

static inline void guest_on_event(void *ud, const struct hv_event *e)
{
	if (e->kind != HV_EVENT_HYPERVISOR || !e->name || !e->domain ||
	    strcmp(e->name, "agent-lifecycle") || strcmp(e->domain, ud))
		return;
	pthread_mutex_lock(&guest_agent_ev.lock);
	snprintf(guest_agent_ev.last, sizeof(guest_agent_ev.last), "%s",
		 e->data_json ? e->data_json : "");
	pthread_mutex_unlock(&guest_agent_ev.lock);
}

/* Waits up to ms until the last agent-lifecycle event says `state`. */
static inline bool guest_wait_agent_event(const char *state, int ms)
{
	struct timespec t0, t, nap = { 0, 50 * 1000000 };
	char want[64];
	bool ok;

	snprintf(want, sizeof(want), "{\"state\":\"%s\"}", state);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		pthread_mutex_lock(&guest_agent_ev.lock);
		ok = strcmp(guest_agent_ev.last, want) == 0;
		pthread_mutex_unlock(&guest_agent_ev.lock);
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (ok || (t.tv_sec - t0.tv_sec) * 1000 +
			  (t.tv_nsec - t0.tv_nsec) / 1000000 > ms)
			return ok;
		nanosleep(&nap, NULL);
	}
}
