/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The driver-independent parts of lib/hv.c: verbs, states, URI dispatch. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hv.h"
#include "../check.h"


static int parse(const char *s, size_t len)
{
	enum hv_verb v = HV_VERB_COUNT;
	int r = hv_verb_parse(s, len, &v);

	return r < 0 ? r : (int)v;
}

#define PARSE(lit) parse(lit, sizeof(lit) - 1)

static void test_verbs(void)
{
	CHECK(PARSE("pause") == HV_VERB_PAUSE);
	CHECK(PARSE("pause\n") == HV_VERB_PAUSE);
	CHECK(PARSE("pause\r\n") == HV_VERB_PAUSE);
	CHECK(PARSE("powerdown\n") == HV_VERB_POWERDOWN);
	CHECK(PARSE("start") == HV_VERB_START);
	CHECK(PARSE("wakeup") == HV_VERB_WAKEUP);
	CHECK(PARSE("destroy\n") == HV_VERB_DESTROY);
	/* Exactly one verb on one line, nothing around it. */
	CHECK(PARSE("") == -EINVAL);
	CHECK(PARSE("\n") == -EINVAL);
	CHECK(PARSE("pause\n\n") == -EINVAL);
	CHECK(PARSE(" pause") == -EINVAL);
	CHECK(PARSE("pause ") == -EINVAL);
	CHECK(PARSE("Pause") == -EINVAL);
	CHECK(PARSE("paus") == -EINVAL);
	CHECK(PARSE("pausee") == -EINVAL);
	CHECK(PARSE("pause\nresume\n") == -EINVAL);
	CHECK(PARSE("pa\0se") == -EINVAL);
	CHECK(PARSE("pause\0") == -EINVAL);
	CHECK(PARSE("frobnicate\n") == -EINVAL);
	for (unsigned v = 0; v < HV_VERB_COUNT; v++) {
		const char *name = hv_verb_name(v);

		CHECK(name && parse(name, strlen(name)) == (int)v);
	}
	CHECK(hv_verb_name(HV_VERB_COUNT) == NULL);
}

static void test_states(void)
{
	static const char *const want[] = { "nostate", "running", "blocked",
		"paused", "shutdown", "shutoff", "crashed", "pmsuspended" };

	CHECK(HV_STATE_COUNT == sizeof(want) / sizeof(want[0]));
	for (unsigned s = 0; s < HV_STATE_COUNT; s++)
		CHECK(hv_state_name(s) && strcmp(hv_state_name(s), want[s]) == 0);
	CHECK(hv_state_name(HV_STATE_COUNT) == NULL);
	CHECK(hv_state_name((enum hv_state)-1) == NULL);
}

static void test_open(void)
{
	struct hv_conn *c = NULL;
	char *err = NULL;

	CHECK(hv_open("nonsense://x", NULL, &c, &err) == -EINVAL);
	CHECK(c == NULL);
	CHECK(err && strstr(err, "nonsense://x"));
	free(err);
	CHECK(hv_close(NULL) == NULL);
}

int main(void)
{
	test_verbs();
	test_states();
	test_open();
	return check_finish("test-hv");
}
