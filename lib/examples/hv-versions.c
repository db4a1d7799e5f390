/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * hv-versions: every domain of a host with the version of its QEMU, using
 * only libhv (the C twin of go-qemu's example):
 *
 *   $ hv-versions qemu:///system
 *   Domain      QEMU Version
 *   droplet-1   7.2.22
 *
 * The URI is any that hv_open() takes (default qemu:///system). A domain
 * that is not running has no QEMU and shows "-". Exits 0, or 1 when the
 * connection or the listing failed or some version could not be read (that
 * row shows "?" and the reason goes to stderr).
 *
 * Build against an installed libhv:
 *   cc -o hv-versions hv-versions.c $(pkg-config --cflags --libs hvfs)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hv.h"

static int by_name(const void *a, const void *b)
{
	const struct hv_domain_info *x = a, *y = b;

	return strcmp(x->name, y->name);
}

int main(int argc, char **argv)
{
	const char *uri = argc > 1 ? argv[1] : "qemu:///system";
	struct hv_conn *c = NULL;
	struct hv_domain_info *doms = NULL;
	size_t n = 0, i;
	char *err = NULL;
	int width = 12, ret = 0, r;

	if (argc > 2 || (argc == 2 && argv[1][0] == '-')) {
		fprintf(stderr, "usage: %s [URI]\n", argv[0]);
		return 2;
	}
	r = hv_open(uri, NULL, &c, &err);
	if (r < 0) {
		fprintf(stderr, "%s: %s\n", uri, err ? err : strerror(-r));
		free(err);
		return 1;
	}
	r = hv_list_domains(c, &doms, &n, &err);
	if (r < 0) {
		fprintf(stderr, "%s: %s\n", uri, err ? err : strerror(-r));
		free(err);
		hv_close(c);
		return 1;
	}
	qsort(doms, n, sizeof(*doms), by_name);
	for (i = 0; i < n; i++) {
		int len = (int)strlen(doms[i].name) + 2;

		if (len > width)
			width = len;
	}

	printf("%-*s%s\n", width, "Domain", "QEMU Version");
	for (i = 0; i < n; i++) {
		char *version = NULL;

		r = hv_version(c, doms[i].name, &version, &err);
		if (r == -ENODATA) {
			printf("%-*s-\n", width, doms[i].name);
		} else if (r < 0) {
			printf("%-*s?\n", width, doms[i].name);
			fprintf(stderr, "%s: %s\n", doms[i].name,
				err ? err : strerror(-r));
			ret = 1;
		} else {
			printf("%-*s%s\n", width, doms[i].name, version);
		}
		free(version);
		free(err);
		err = NULL;
	}
	free(doms);
	hv_close(c);
	return ret;
}
