/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fuzz target: libvirt's auth.conf lookup, vrpc_authfile_lookup()
 * (lib/vrpc-authfile.h). The input is a whole file; every key is looked up
 * for two hosts. A value found has no line break and no space at its ends;
 * an error is -EINVAL with a message.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vrpc-authfile.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const keys[] = { "authname", "password",
					    "username", "realm" };
	static const char *const hosts[] = { "h", "127.0.0.1" };
	char *text = malloc(size + 1);

	ASSERT(text);
	memcpy(text, data, size);
	text[size] = '\0';
	for (unsigned h = 0; h < 2; h++) {
		for (unsigned k = 0; k < 4; k++) {
			char *v = NULL, *err = NULL;
			int r = vrpc_authfile_lookup(text, hosts[h], keys[k],
						     &v, &err);

			if (r < 0) {
				ASSERT(r == -EINVAL && err && !v);
			} else if (v) {
				size_t n = strlen(v);

				ASSERT(!strchr(v, '\n'));
				ASSERT(n == 0 || (v[0] != ' ' &&
						  v[n - 1] != ' '));
			}
			free(v);
			free(err);
		}
	}
	free(text);
	return 0;
}
