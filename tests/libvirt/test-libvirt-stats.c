/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Bulk statistics of the libvirt driver (hv_stats_all(), hv_stats()) against
 * the tests' private libvirtd ($HVFS_TEST_LIBVIRTD; meson runs this under
 * `tests/libvirtd.sh run`), with `virsh domstats` as the oracle: the same
 * domains, the same keys in the same order, fixed values equal, growing ones
 * between what virsh said just before and just after. Root. Creates domains
 * named hvt-st-<pid>-N and removes them on every exit.
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hv.h"
#include "lvutil.h"
#include "../check.h"

#define NRUN 4 /* running domains; the last one paused */
/* The groups hv_stats_all() asks for (lib/hv-libvirt.c STATS_GROUPS), as
 * virsh names them: the oracle asks for the same. */
#define GROUPS "--state --cpu-total --balloon --vcpu --interface --block " \
	       "--perf --memory"

#define NDOM (NRUN + 1) /* and one shut off */

static char uri[320], test_uri[320];
static char doms[NDOM][64];
static char dir[128];

static void cleanup(void)
{
	for (int i = 0; i < NDOM; i++) {
		if (!doms[i][0])
			continue;
		sh(NULL, "virsh -q -c \"$HVT_URI\" destroy %s >/dev/null 2>&1",
		   doms[i]);
		sh(NULL, "virsh -q -c \"$HVT_URI\" undefine %s >/dev/null 2>&1",
		   doms[i]);
	}
	if (dir[0])
		sh(NULL, "rm -rf '%s'", dir);
}

static void on_signal(int sig)
{
	/* Not async-signal-safe, but leaving domains behind is worse. */
	cleanup();
	_exit(128 + sig);
}

/* Domain i: a disk, and two vCPUs on the odd ones, so that the block and
 * vcpu groups have something to count. */
static void make_domain(int i, bool start)
{
	char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%d.xml", dir, i);
	REQUIRE(sh(NULL, "truncate -s 4M %s/%d.img", dir, i) == 0);
	f = fopen(path, "w");
	REQUIRE(f);
	fprintf(f, "<domain type='%s'><name>%s</name>"
		   "<memory unit='MiB'>32</memory><vcpu>%d</vcpu>"
		   "<os><type arch='x86_64' machine='pc'>hvm</type></os>"
		   "<devices><emulator>/usr/bin/qemu-system-x86_64</emulator>"
		   "<disk type='file' device='disk'><driver name='qemu' "
		   "type='raw'/><source file='%s/%d.img'/>"
		   "<target dev='vda' bus='virtio'/></disk>"
		   "</devices></domain>\n",
		access("/dev/kvm", R_OK | W_OK) ? "qemu" : "kvm", doms[i],
		i % 2 ? 2 : 1, dir, i);
	fclose(f);
	REQUIRE(sh(NULL, "virsh -q -c \"$HVT_URI\" define %s >/dev/null",
		   path) == 0);
	if (start)
		REQUIRE(sh(NULL, "virsh -q -c \"$HVT_URI\" start %s >/dev/null",
			   doms[i]) == 0);
}

/* ---- virsh domstats, parsed ---- */

struct kv {
	char *key, *value;
};

struct vdom {
	char name[256];
	struct kv *kv;
	size_t n;
};

/* Parses `virsh domstats` output ("Domain: 'NAME'", "  key=value"). */
static size_t parse_domstats(char *text, struct vdom **ret)
{
	struct vdom *v = NULL;
	size_t n = 0;
	char *save = NULL;

	for (char *line = strtok_r(text, "\n", &save); line;
	     line = strtok_r(NULL, "\n", &save)) {
		char *eq;

		if (!strncmp(line, "Domain: '", 9)) {
			v = realloc(v, (n + 1) * sizeof(*v));
			REQUIRE(v);
			memset(&v[n], 0, sizeof(v[n]));
			snprintf(v[n].name, sizeof(v[n].name), "%s", line + 9);
			v[n].name[strlen(v[n].name) - 1] = '\0'; /* the quote */
			n++;
		} else if (n && !strncmp(line, "  ", 2) &&
			   (eq = strchr(line, '='))) {
			struct vdom *d = &v[n - 1];

			*eq = '\0';
			d->kv = realloc(d->kv, (d->n + 1) * sizeof(*d->kv));
			REQUIRE(d->kv);
			d->kv[d->n].key = line + 2;
			d->kv[d->n].value = eq + 1;
			d->n++;
		}
	}
	*ret = v;
	return n;
}

static const struct vdom *vfind(const struct vdom *v, size_t n,
				const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(v[i].name, name))
			return &v[i];
	return NULL;
}

static const char *vget(const struct vdom *d, const char *key)
{
	for (size_t i = 0; d && i < d->n; i++)
		if (!strcmp(d->kv[i].key, key))
			return d->kv[i].value;
	return NULL;
}

static void free_vdoms(struct vdom *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].kv);
	free(v);
}

/* mid lies between lo and hi (numbers; a string that changed has no
 * order). */
static bool between(const char *lo, const char *mid, const char *hi)
{
	char *e1, *e2, *e3;
	double a = strtod(lo, &e1), b = strtod(mid, &e2), c = strtod(hi, &e3);

	if (*e1 || *e2 || *e3)
		return false;
	return (a <= b && b <= c) || (a >= b && b >= c);
}

/*
 * Our record against virsh's answers just before (a) and just after (b):
 * the same keys in the same order, each value equal to virsh's when virsh
 * said the same twice, else between the two.
 */
static void compare_domain(const struct hv_stats *st, const struct vdom *a,
			   const struct vdom *b)
{
	char val[4096];
	bool same_keys;

	CHECK(a && b);
	if (!a || !b)
		return;
	same_keys = a->n == b->n && st->n == a->n;
	for (size_t i = 0; same_keys && i < a->n; i++)
		same_keys = !strcmp(a->kv[i].key, b->kv[i].key) &&
			    !strcmp(a->kv[i].key, st->stats[i].key);
	if (!same_keys) {
		fprintf(stderr, "%s: keys differ; ours:", st->name);
		for (size_t i = 0; i < st->n; i++)
			fprintf(stderr, " %s", st->stats[i].key);
		fprintf(stderr, "\nvirsh:");
		for (size_t i = 0; i < a->n; i++)
			fprintf(stderr, " %s", a->kv[i].key);
		fprintf(stderr, "\n");
	}
	CHECK(same_keys);
	for (size_t i = 0; i < st->n; i++) {
		const char *va = vget(a, st->stats[i].key);
		const char *vb = vget(b, st->stats[i].key);
		bool ok;

		hv_stat_format(&st->stats[i], val, sizeof(val));
		if (!va || !vb)
			continue; /* counted in same_keys */
		ok = !strcmp(va, vb) ? !strcmp(val, va) : between(va, val, vb);
		if (!ok)
			fprintf(stderr, "%s: %s=%s, virsh %s then %s\n",
				st->name, st->stats[i].key, val, va, vb);
		CHECK(ok);
	}
}

static int64_t now_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

static void test_all(struct hv_conn *c)
{
	struct hv_stats *st = NULL;
	struct vdom *va = NULL, *vb = NULL;
	char *before = NULL, *after = NULL, *err = NULL;
	size_t n = 0, na, nb;
	int r;

	sh(&before, "virsh -c \"$HVT_URI\" domstats " GROUPS);
	r = hv_stats_all(c, &st, &n, &err);
	sh(&after, "virsh -c \"$HVT_URI\" domstats " GROUPS);
	if (r < 0)
		fprintf(stderr, "hv_stats_all: %s\n", err);
	REQUIRE(r == 0);
	na = parse_domstats(before, &va);
	nb = parse_domstats(after, &vb);

	for (int i = 0; i < NDOM; i++) {
		const struct hv_stats *s = NULL;

		for (size_t j = 0; j < n; j++)
			if (!strcmp(st[j].name, doms[i]))
				s = &st[j];
		CHECK(s != NULL);
		if (!s)
			continue;
		CHECK(s->error == 0);
		compare_domain(s, vfind(va, na, doms[i]),
			       vfind(vb, nb, doms[i]));
	}
	/* The states, in libvirt's numbers and type. */
	for (size_t j = 0; j < n; j++) {
		const struct hv_stat *k = hv_stats_find(&st[j], "state.state");

		CHECK(k && k->type == HV_STAT_INT);
		for (int i = 0; k && i < NDOM; i++)
			if (!strcmp(st[j].name, doms[i]))
				CHECK(k->v.i == (i == NRUN ? HV_STATE_SHUTOFF :
						 i == NRUN - 1 ? HV_STATE_PAUSED :
						 HV_STATE_RUNNING));
	}
	/* Every domain virsh saw both times is in ours. */
	for (size_t i = 0; i < na; i++) {
		bool found = false;

		if (!vfind(vb, nb, va[i].name))
			continue;
		for (size_t j = 0; j < n; j++)
			found |= !strcmp(st[j].name, va[i].name);
		CHECK(found);
	}
	hv_stats_free(st, n);
	free_vdoms(va, na);
	free_vdoms(vb, nb);
	free(before);
	free(after);
	free(err);
}

static void test_one(struct hv_conn *c)
{
	struct hv_stats *st = NULL;
	struct vdom *va = NULL, *vb = NULL;
	char *before = NULL, *after = NULL, *all = NULL, *err = NULL;
	const struct hv_stat *k;
	size_t na, nb;

	sh(&before, "virsh -c \"$HVT_URI\" domstats " GROUPS " %s", doms[1]);
	CHECK(hv_stats(c, doms[1], &st, &err) == 0);
	sh(&after, "virsh -c \"$HVT_URI\" domstats " GROUPS " %s", doms[1]);
	na = parse_domstats(before, &va);
	nb = parse_domstats(after, &vb);
	REQUIRE(st && !strcmp(st->name, doms[1]));
	compare_domain(st, vfind(va, na, doms[1]), vfind(vb, nb, doms[1]));
	/* The groups our domains have: the disk and the second vCPU. */
	k = hv_stats_find(st, "block.0.name");
	CHECK(k && k->type == HV_STAT_STRING && !strcmp(k->v.s, "vda"));
	CHECK(hv_stats_find(st, "block.0.rd.bytes") &&
	      hv_stats_find(st, "vcpu.1.time") &&
	      hv_stats_find(st, "cpu.time") &&
	      hv_stats_find(st, "balloon.current"));
	/* The groups left out, which virsh gives when asked for every group
	 * (dirtyrate.calc_status of any running domain). */
	sh(&all, "virsh -c \"$HVT_URI\" domstats %s", doms[1]);
	CHECK(all && strstr(all, "dirtyrate."));
	free(all);
	for (size_t i = 0; i < st->n; i++)
		CHECK(strncmp(st->stats[i].key, "dirtyrate.", 10) &&
		      strncmp(st->stats[i].key, "iothread.", 9) &&
		      strncmp(st->stats[i].key, "vm.", 3));
	hv_stats_free(st, 1);
	free_vdoms(va, na);
	free_vdoms(vb, nb);
	free(before);
	free(after);

	/* No such domain; one that left after we cached its uuid; one new
	 * under the old name. */
	free(err);
	err = NULL;
	st = NULL;
	CHECK(hv_stats(c, "hvt-st-no-such-domain", &st, &err) == -ENOENT);
	CHECK(st == NULL && err != NULL);
	free(err);
	err = NULL;
	CHECK(sh(NULL, "virsh -q -c \"$HVT_URI\" undefine %s >/dev/null",
		 doms[NRUN]) == 0);
	CHECK(hv_stats(c, doms[NRUN], &st, &err) == -ENOENT);
	make_domain(NRUN, false);
	CHECK(hv_stats(c, doms[NRUN], &st, &err) == 0);
	k = st ? hv_stats_find(st, "state.state") : NULL;
	CHECK(k && k->v.i == HV_STATE_SHUTOFF);
	hv_stats_free(st, 1);
	free(err);
}

/*
 * A domain stuck in a job: its QEMU stopped (SIGSTOP) while a monitor
 * command holds the job. Without NOWAIT libvirt would make everyone wait up
 * to its 30 s job timeout; with it the domain gives what needs no job, the
 * same keys `virsh domstats --nowait` shows, and the others all of theirs.
 */
static void test_nowait(struct hv_conn *c, const char *lvdir)
{
	struct hv_stats *st = NULL;
	struct vdom *va = NULL, *vb = NULL;
	char *before = NULL, *after = NULL, *pidtext = NULL, *err = NULL;
	const struct hv_stats *stuck = NULL, *other = NULL;
	size_t n = 0, na, nb;
	int64_t t;
	int pid;

	REQUIRE(sh(&pidtext, "cat %s/run/qemu/%s.pid", lvdir, doms[0]) == 0);
	pid = atoi(pidtext);
	free(pidtext);
	REQUIRE(pid > 0 && kill(pid, SIGSTOP) == 0);
	sh(NULL, "timeout 60 virsh -c \"$HVT_URI\" qemu-monitor-command %s "
		 "'{\"execute\":\"query-status\"}' >/dev/null 2>&1 &", doms[0]);
	sleep(1); /* until the monitor command holds the job */

	sh(&before, "virsh -c \"$HVT_URI\" domstats --nowait %s", doms[0]);
	t = now_us();
	CHECK(hv_stats_all(c, &st, &n, &err) == 0);
	t = now_us() - t;
	sh(&after, "virsh -c \"$HVT_URI\" domstats --nowait %s", doms[0]);
	kill(pid, SIGCONT);
	printf("# hv_stats_all with %s in a job: %.1f ms\n", doms[0],
	       t / 1000.0);
	CHECK(t < 10 * 1000000);
	for (size_t i = 0; i < n; i++) {
		if (!strcmp(st[i].name, doms[0]))
			stuck = &st[i];
		if (!strcmp(st[i].name, doms[1]))
			other = &st[i];
	}
	na = parse_domstats(before, &va);
	nb = parse_domstats(after, &vb);
	CHECK(stuck != NULL);
	if (stuck) {
		compare_domain(stuck, vfind(va, na, doms[0]),
			       vfind(vb, nb, doms[0]));
		CHECK(hv_stats_find(stuck, "state.state") &&
		      hv_stats_find(stuck, "cpu.time"));
	}
	/* Another domain is not held up: its job-only keys are there. */
	CHECK(other && hv_stats_find(other, "balloon.rss") &&
	      hv_stats_find(other, "block.0.rd.bytes"));
	hv_stats_free(st, n);
	free_vdoms(va, na);
	free_vdoms(vb, nb);
	free(before);
	free(after);
	free(err);
}

/* The test driver: whatever virsh says (state only, on libvirt 9.0). */
static void test_test_driver(void)
{
	struct hv_conn *c = NULL;
	struct hv_stats *st = NULL;
	struct vdom *v = NULL;
	char *out = NULL, *err = NULL;
	size_t n = 0, nv;

	REQUIRE(hv_open(test_uri, NULL, &c, &err) == 0);
	CHECK(hv_stats_all(c, &st, &n, &err) == 0);
	sh(&out, "virsh -c \"$HVT_TEST_URI\" domstats");
	nv = parse_domstats(out, &v);
	CHECK(n == nv && n > 0);
	for (size_t i = 0; i < n; i++)
		compare_domain(&st[i], vfind(v, nv, st[i].name),
			       vfind(v, nv, st[i].name));
	hv_stats_free(st, n);
	free_vdoms(v, nv);
	free(out);
	free(err);
	hv_close(c);
}

/* One hv_stats_all() against one `virsh domstats` of every domain, as a
 * user runs it: best of 5 each, reported, not asserted. */
static void measure(struct hv_conn *c)
{
	int64_t best_hv = INT64_MAX, best_virsh = INT64_MAX, t;
	struct hv_stats *st = NULL;
	size_t n = 0;

	for (int i = 0; i < 5; i++) {
		t = now_us();
		CHECK(hv_stats_all(c, &st, &n, NULL) == 0);
		t = now_us() - t;
		hv_stats_free(st, n);
		best_hv = t < best_hv ? t : best_hv;
		t = now_us();
		sh(NULL, "virsh -c \"$HVT_URI\" domstats >/dev/null");
		t = now_us() - t;
		best_virsh = t < best_virsh ? t : best_virsh;
	}
	printf("# %zu domains: hv_stats_all %.2f ms, virsh domstats %.2f ms "
	       "(best of 5)\n", n, best_hv / 1000.0, best_virsh / 1000.0);
}

int main(void)
{
	const char *d = getenv("HVFS_TEST_LIBVIRTD");
	struct hv_conn *c = NULL;
	struct stat st;
	char *err = NULL;

	if (stat("/usr/sbin/libvirtd", &st) < 0) {
		fprintf(stderr, "no libvirtd on this machine\n");
		return 77;
	}
	if (!d) {
		fprintf(stderr, "no private libvirtd: run me as "
				"`tests/libvirtd.sh run test-libvirt-stats`\n");
		return 1;
	}
	snprintf(uri, sizeof(uri),
		 "qemu+unix:///system?socket=%s/run/libvirt-sock", d);
	snprintf(test_uri, sizeof(test_uri),
		 "test+unix:///default?socket=%s/run/libvirt-sock", d);
	setenv("HVT_URI", uri, 1);
	setenv("HVT_TEST_URI", test_uri, 1);
	setenv("LC_ALL", "C", 1); /* virsh's numbers as C prints them */
	snprintf(dir, sizeof(dir), "/tmp/hvt-st-%d", (int)getpid());
	REQUIRE(mkdir(dir, 0700) == 0);
	for (int i = 0; i < NDOM; i++)
		snprintf(doms[i], sizeof(doms[i]), "hvt-st-%d-%d",
			 (int)getpid(), i);
	atexit(cleanup);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);

	for (int i = 0; i < NDOM; i++)
		make_domain(i, i < NRUN);
	REQUIRE(sh(NULL, "virsh -q -c \"$HVT_URI\" suspend %s >/dev/null",
		   doms[NRUN - 1]) == 0);

	REQUIRE(hv_open(uri, &(struct hv_options){ .timeout_ms = 10000 }, &c,
			&err) == 0);
	test_all(c);
	test_one(c);
	measure(c);
	test_nowait(c, d);
	hv_close(c);
	test_test_driver();
	free(err);
	return check_finish("test-libvirt-stats");
}
