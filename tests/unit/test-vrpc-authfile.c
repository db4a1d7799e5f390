/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libvirt's auth.conf lookup (vrpc-authfile.c) against literal files: the
 * host's group, the default group, comments and spaces, and broken files.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vrpc-authfile.h"
#include "../check.h"

static const char conf[] =
	"# libvirt auth.conf\n"
	"; another comment\n"
	"[credentials-admin]\n"
	"authname = alice \n"
	"password=pa ss=word\r\n"
	"\n"
	"[credentials-guest]\n"
	"authname=bob\n"
	"[auth-libvirt-node-a]\n"
	"credentials=admin\n"
	"[auth-libvirt-default]\n"
	"  credentials = guest\n";

/* The value of key for host, "" for none, "E<errno>" for an error. */
static char *look(const char *text, const char *host, const char *key)
{
	char *v = NULL, *err = NULL, *out;
	int r = vrpc_authfile_lookup(text, host, key, &v, &err);

	if (r < 0) {
		REQUIRE(err != NULL);
		out = malloc(16);
		REQUIRE(out);
		snprintf(out, 16, "E%d", -r);
		free(err);
		return out;
	}
	return v ? v : strdup("");
}

#define LOOK(text, host, key, want)                                        \
	do {                                                               \
		char *got = look(text, host, key);                         \
		CHECK(!strcmp(got, want));                                 \
		free(got);                                                 \
	} while (0)

static void test_lookup(void)
{
	LOOK(conf, "node-a", "authname", "alice");
	/* spaces around the '=' go, the rest of the value stays */
	LOOK(conf, "node-a", "password", "pa ss=word");
	/* another host: the default group */
	LOOK(conf, "node-b", "authname", "bob");
	/* the default's credentials lack a password: none, no error */
	LOOK(conf, "node-b", "password", "");
	LOOK(conf, "node-a", "username", "");
}

static void test_no_group(void)
{
	static const char only[] =
		"[credentials-x]\nauthname=x\n[auth-libvirt-h]\ncredentials=x\n";

	/* no group for the host and no default: no credentials */
	LOOK(only, "other", "authname", "");
	LOOK(only, "h", "authname", "x");
	LOOK("", "h", "authname", "");
}

static void test_broken(void)
{
	/* the host's group names credentials the file lacks */
	LOOK("[auth-libvirt-h]\ncredentials=nope\n", "h", "authname", "E22");
	/* a group without credentials= */
	LOOK("[auth-libvirt-h]\nfoo=bar\n", "h", "authname", "E22");
	/* not a key file */
	LOOK("[auth-libvirt-h]\njust words\n", "h", "authname", "E22");
	LOOK("[auth-libvirt-h\ncredentials=x\n", "h", "authname", "E22");
	/* a group name must match whole, not as a prefix */
	LOOK("[credentials-ab]\nauthname=ab\n[auth-libvirt-h]\n"
	     "credentials=a\n", "h", "authname", "E22");
}

int main(void)
{
	test_lookup();
	test_no_group();
	test_broken();
	return check_finish("test-vrpc-authfile");
}
