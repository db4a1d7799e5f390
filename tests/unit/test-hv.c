/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The driver-independent parts of lib/hv.c: verbs, states, URI dispatch. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hv-driver.h"
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

/* The counters' builder (hv-driver.h) and the functions over its result. */
static void test_stats(void)
{
	struct hvd_stats_builder b = { 0 };
	struct hv_stats st = { .name = "x" };
	char buf[64], key[HV_STAT_KEY_MAX + 2];
	const struct hv_stat *s;

	hvd_stats_add(&b, &(struct hv_stat){ .key = "state.state",
					     .type = HV_STAT_INT, .v.i = -3 });
	hvd_stats_addf(&b, HV_STAT_ULL(18446744073709551615ull),
		      "vcpu.%d.time", 12);
	hvd_stats_addf(&b, HV_STAT_STR("/a b\nc"), "block.%d.path", 0);
	hvd_stats_add(&b, &(struct hv_stat){ .key = "x.d",
					     .type = HV_STAT_DOUBLE, .v.d = 0.25 });
	hvd_stats_add(&b, &(struct hv_stat){ .key = "x.b",
					     .type = HV_STAT_BOOLEAN, .v.b = true });
	hvd_stats_add(&b, &(struct hv_stat){ .key = "x.u",
					     .type = HV_STAT_UINT, .v.ui = 7 });
	hvd_stats_add(&b, &(struct hv_stat){ .key = "x.l",
					     .type = HV_STAT_LLONG, .v.l = -9 });
	CHECK(hvd_stats_pack(&b, &st) == 0 && st.n == 7);
	CHECK(b.v == NULL && b.buf == NULL);
	s = hv_stats_find(&st, "vcpu.12.time");
	CHECK(s && s->type == HV_STAT_ULLONG &&
	      hv_stat_format(s, buf, sizeof(buf)) == 20 &&
	      !strcmp(buf, "18446744073709551615"));
	s = hv_stats_find(&st, "state.state");
	CHECK(s == &st.stats[0] && hv_stat_format(s, buf, sizeof(buf)) == 2 &&
	      !strcmp(buf, "-3"));
	s = hv_stats_find(&st, "block.0.path");
	CHECK(s && !strcmp(s->v.s, "/a b\nc"));
	CHECK(hv_stat_format(&st.stats[3], buf, sizeof(buf)) > 0 &&
	      !strcmp(buf, "0.25"));
	CHECK(hv_stat_format(&st.stats[4], buf, sizeof(buf)) > 0 &&
	      !strcmp(buf, "1"));
	CHECK(hv_stat_format(&st.stats[5], buf, sizeof(buf)) > 0 &&
	      !strcmp(buf, "7"));
	CHECK(hv_stat_format(&st.stats[6], buf, sizeof(buf)) > 0 &&
	      !strcmp(buf, "-9"));
	CHECK(hv_stats_find(&st, "vcpu.1.time") == NULL);
	/* Truncation says what it needed, like snprintf. */
	CHECK(hv_stat_format(&st.stats[1], buf, 4) == 20 && !strcmp(buf, "184"));
	free(st.stats);

	/* Keys that are not libvirt's kind are refused, and the first
	 * failure sticks. */
	memset(key, 'k', sizeof(key));
	key[HV_STAT_KEY_MAX] = '\0';
	hvd_stats_add(&b, &(struct hv_stat){ .key = key, .type = HV_STAT_INT });
	CHECK(b.err == 0 && b.n == 1);
	key[HV_STAT_KEY_MAX] = 'k';
	key[HV_STAT_KEY_MAX + 1] = '\0';
	hvd_stats_add(&b, &(struct hv_stat){ .key = key, .type = HV_STAT_INT });
	CHECK(b.err == -EPROTO && b.n == 1);
	hvd_stats_add(&b, &(struct hv_stat){ .key = "ok", .type = HV_STAT_INT });
	CHECK(b.n == 1);
	CHECK(hvd_stats_pack(&b, &st) == -EPROTO && b.v == NULL);
	static const char *const bad[] = { "", "a b", "a\n", "\x7f", "\xc3\xa9" };

	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
		hvd_stats_add(&b, &(struct hv_stat){ .key = bad[i],
						     .type = HV_STAT_INT });
		CHECK(b.err == -EPROTO && b.n == 0);
		hvd_stats_builder_release(&b);
	}
	hvd_stats_add(&b, &(struct hv_stat){ .key = "t", .type = 8 });
	CHECK(b.err == -EPROTO);
	hvd_stats_builder_release(&b);
	hvd_stats_addf(&b, HV_STAT_ULL(1), "%0100d", 1);
	CHECK(b.err == -EPROTO);
	hvd_stats_builder_release(&b);
	/* Nothing added: no counters, no allocation. */
	CHECK(hvd_stats_pack(&b, &st) == 0 && st.n == 0 && st.stats == NULL);
	CHECK(hv_stats_free(NULL, 3) == NULL);
}

int main(void)
{
	test_verbs();
	test_states();
	test_open();
	test_stats();
	return check_finish("test-hv");
}
