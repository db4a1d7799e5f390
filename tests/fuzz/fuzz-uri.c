/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Fuzz target: libvirt URIs, vrpc_uri_parse() (lib/vrpc-uri.h), which reads
 * what users write after -c. Refusals are -EINVAL or -EOPNOTSUPP with a
 * message; what it accepts names its driver and has what its transport
 * needs: a socket for unix, a host (never an ssh option) for the others, a
 * numeric port where one is set.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "vrpc-uri.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *uri = malloc(size + 1), *err = NULL;
	struct vrpc_uri *u = NULL;
	int r;

	if (!uri)
		return 0;
	memcpy(uri, data, size);
	uri[size] = '\0';
	r = vrpc_uri_parse(uri, &u, &err);
	if (r < 0) {
		ASSERT(r == -EINVAL || r == -EOPNOTSUPP || r == -ENOMEM);
		ASSERT(!u && (err || r == -ENOMEM));
	} else {
		ASSERT(r == 0 && u && u->name);
		ASSERT(!strncmp(u->name, "qemu://", 7) ||
		       !strncmp(u->name, "test://", 7));
		ASSERT(vrpc_uri_is_libvirt(uri));
		if (u->transport == VRPC_TRANSPORT_UNIX) {
			ASSERT(u->path && !u->host);
		} else {
			ASSERT(u->transport == VRPC_TRANSPORT_TCP ||
			       u->transport == VRPC_TRANSPORT_SSH ||
			       u->transport == VRPC_TRANSPORT_TLS);
			ASSERT(u->host && u->host[0] && u->host[0] != '-');
		}
		if (u->transport == VRPC_TRANSPORT_TCP ||
		    u->transport == VRPC_TRANSPORT_TLS)
			ASSERT(u->port);
		if (u->port)
			ASSERT(u->port[0] && strlen(u->port) <= 5 &&
			       strspn(u->port, "0123456789") ==
				       strlen(u->port));
		ASSERT(!u->pkipath || u->transport == VRPC_TRANSPORT_TLS);
	}
	vrpc_uri_free(u);
	free(err);
	free(uri);
	return 0;
}
