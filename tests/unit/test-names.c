/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * fs/names.c: names from peers as path components, and back. block/ shows
 * a device by its escaped name and asks lib/ for it by the name QEMU gave,
 * so every name must come back from its escaped form as it was.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "names.h"

/* name -> escaped form, and back. */
static void round_trip(const char *name, const char *escaped, bool plain)
{
	char *e = name_escape(name), *u = e ? name_unescape(e) : NULL;

	CHECK(e && strcmp(e, escaped) == 0);
	CHECK(u && strcmp(u, *name ? name : "") == 0);
	CHECK(name_is_plain(name) == plain);
	free(e);
	free(u);
}

int main(void)
{
	round_trip("virtio-disk0", "virtio-disk0", true);
	round_trip("#block123", "#block123", true);
	round_trip("a/b", "a%2Fb", false);
	round_trip("50%", "50%25", false);
	round_trip("%41", "%2541", false);
	round_trip(".hidden", "%2Ehidden", false);
	round_trip("..", "%2E.", false);
	round_trip("tab\there", "tab%09here", false);
	round_trip("caf\xc3\xa9", "caf\xc3\xa9", true);  /* valid UTF-8 stays */
	round_trip("bad\xff", "bad%FF", false);
	round_trip("", "%00", false);
	/* What no escaping makes is taken as it is. */
	{
		char *u = name_unescape("100%");

		CHECK(u && strcmp(u, "100%") == 0);
		free(u);
		u = name_unescape("%zz%4");
		CHECK(u && strcmp(u, "%zz%4") == 0);
		free(u);
	}
	return check_finish("test-names");
}
