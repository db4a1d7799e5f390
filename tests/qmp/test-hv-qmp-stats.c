/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Bulk statistics of the QMP driver (hv_stats_all(), hv_stats()) against
 * real QEMU processes in a qmp-dir, checked against the monitor's own
 * answers (through the same driver's hv_qmp_command()) and the QEMU's
 * /proc: a TCG PC with a balloon, a disk and 2 of 4 vCPUs; a -machine none
 * QEMU with nothing; a socket nobody listens on; a QEMU stopped with
 * SIGSTOP (hung); and a QEMU reached over TCP (not known to be local).
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <unistd.h>

#include <json-c/json.h>

#include "hv.h"
#include "testutil.h"

#define TIMEOUT_MS 3000

static const char *dir;
static char qdir[256], img[300];

/* The monitor's answer to command, parsed. */
static json_object *ask(struct hv_conn *c, const char *name,
			const char *command, const char *args)
{
	char *json = NULL;
	json_object *o;

	REQUIRE(hv_qmp_command(c, name, command, args, &json, NULL) == 0);
	o = json_tokener_parse(json);
	free(json);
	REQUIRE(o);
	return o;
}

static uint64_t u64(json_object *o, const char *key)
{
	json_object *v = NULL;

	REQUIRE(json_object_object_get_ex(o, key, &v));
	return json_object_get_uint64(v);
}

static const struct hv_stats *find_dom(const struct hv_stats *v, size_t n,
				       const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (STREQ(v[i].name, name))
			return &v[i];
	return NULL;
}

static uint64_t stat_u(const struct hv_stats *st, const char *key)
{
	const struct hv_stat *s = hv_stats_find(st, key);

	if (!s)
		return UINT64_MAX;
	switch (s->type) {
	case HV_STAT_INT:
		return (uint64_t)s->v.i;
	case HV_STAT_UINT:
		return s->v.ui;
	case HV_STAT_ULLONG:
		return s->v.ul;
	default:
		return UINT64_MAX - 1;
	}
}

/* utime + stime of /proc/PID/stat, ns. */
static uint64_t proc_cpu_ns(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long ut = 0, st = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	REQUIRE(f);
	REQUIRE(fgets(buf, sizeof(buf), f));
	fclose(f);
	p = strrchr(buf, ')');
	REQUIRE(p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u "
			    "%*u %llu %llu", &ut, &st) == 2);
	return (ut + st) * (1000000000ull / (uint64_t)sysconf(_SC_CLK_TCK));
}

static bool has_prefix_key(const struct hv_stats *st, const char *prefix)
{
	for (size_t i = 0; i < st->n; i++)
		if (!strncmp(st->stats[i].key, prefix, strlen(prefix)))
			return true;
	return false;
}

/* The state letter of /proc/PID/stat; '?' when it cannot be read. */
static char proc_state(pid_t pid)
{
	char path[64], buf[512], *p;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return '?';
	p = fgets(buf, sizeof(buf), f) ? strrchr(buf, ')') : NULL;
	fclose(f);
	return p && p[1] == ' ' ? p[2] : '?';
}

/* Waits up to 2 s for the process to be in state want. */
static bool wait_state(pid_t pid, char want)
{
	for (int i = 0; i < 200; i++, test_sleep_ms(10))
		if (proc_state(pid) == want)
			return true;
	fprintf(stderr, "pid %d: state %c, not %c\n", (int)pid,
		proc_state(pid), want);
	return false;
}

/* A socket file nobody listens on: a QEMU that is gone. */
static void dead_socket(const char *path)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	REQUIRE(strlen(path) < sizeof(a.sun_path));
	memcpy(a.sun_path, path, strlen(path) + 1);
	REQUIRE(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	close(fd);
}

static int free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET,
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	REQUIRE(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0);
	REQUIRE(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

/* Whether something listens on 127.0.0.1:port within ms, from
 * /proc/net/tcp: QEMU binds its TCP monitor a moment after it starts, and a
 * probing connection would take the monitor's one client slot. */
static bool tcp_listening(int port, int ms)
{
	char want[32], line[256];
	bool found = false;
	FILE *f;

	snprintf(want, sizeof(want), ":%04X 00000000:0000 0A", port);
	for (int waited = 0; !found && waited <= ms; waited += 20) {
		f = fopen("/proc/net/tcp", "r");
		REQUIRE(f);
		while (!found && fgets(line, sizeof(line), f))
			found = strstr(line, want) != NULL;
		fclose(f);
		if (!found)
			usleep(20 * 1000);
	}
	return found;
}

/* The stat of block 0 lies between the monitor's answers before and after. */
static bool block_between(const struct hv_stats *pc, const char *key,
			  json_object *before, json_object *after,
			  const char *field)
{
	json_object *b, *a;
	uint64_t v = stat_u(pc, key);

	json_object_object_get_ex(json_object_array_get_idx(before, 0),
				  "stats", &b);
	json_object_object_get_ex(json_object_array_get_idx(after, 0),
				  "stats", &a);
	if (u64(b, field) <= v && v <= u64(a, field))
		return true;
	fprintf(stderr, "%s=%llu, monitor %llu then %llu\n", key,
		(unsigned long long)v, (unsigned long long)u64(b, field),
		(unsigned long long)u64(a, field));
	return false;
}

static void check_pc(struct hv_conn *c, const struct hv_stats *pc,
		     pid_t pid, uint64_t cpu_before, uint64_t cpu_after,
		     json_object *bs_before, json_object *bs_after)
{
	json_object *o;
	size_t n;

	CHECK(pc->error == 0);
	CHECK(stat_u(pc, "state.state") == HV_STATE_RUNNING);
	CHECK(stat_u(pc, "state.reason") == 0);
	CHECK(pc->n >= 2 && STREQ(pc->stats[0].key, "state.state") &&
	      STREQ(pc->stats[1].key, "state.reason"));

	/* cpu.*: the QEMU's own /proc, read before and after. */
	CHECK(stat_u(pc, "cpu.time") == stat_u(pc, "cpu.user") +
					 stat_u(pc, "cpu.system"));
	CHECK(cpu_before <= stat_u(pc, "cpu.time") &&
	      stat_u(pc, "cpu.time") <= cpu_after);
	fprintf(stderr, "pid %d cpu %llu..%llu ours %llu\n", (int)pid,
		(unsigned long long)cpu_before, (unsigned long long)cpu_after,
		(unsigned long long)stat_u(pc, "cpu.time"));

	/* balloon.*: KiB, as libvirt counts. */
	o = ask(c, "pc", "query-balloon", NULL);
	CHECK(stat_u(pc, "balloon.current") == u64(o, "actual") / 1024);
	CHECK(stat_u(pc, "balloon.current") == 65536);
	json_object_put(o);
	o = ask(c, "pc", "query-memory-size-summary", NULL);
	CHECK(stat_u(pc, "balloon.maximum") == u64(o, "base-memory") / 1024);
	json_object_put(o);
	CHECK(stat_u(pc, "balloon.rss") > 0 &&
	      stat_u(pc, "balloon.rss") < (1u << 20));

	/* vcpu.*: -smp 2,maxcpus=4. */
	o = ask(c, "pc", "query-cpus-fast", NULL);
	n = json_object_array_length(o);
	CHECK(n == 2 && stat_u(pc, "vcpu.current") == n);
	CHECK(stat_u(pc, "vcpu.maximum") == 4);
	for (size_t i = 0; i < n; i++) {
		char key[64];
		uint64_t idx = u64(json_object_array_get_idx(o, i),
				   "cpu-index");

		snprintf(key, sizeof(key), "vcpu.%llu.state",
			 (unsigned long long)idx);
		CHECK(stat_u(pc, key) == 1);
		snprintf(key, sizeof(key), "vcpu.%llu.time",
			 (unsigned long long)idx);
		/* A vCPU thread's time is part of the process's. */
		CHECK(stat_u(pc, key) <= stat_u(pc, "cpu.time"));
		snprintf(key, sizeof(key), "vcpu.%llu.delay",
			 (unsigned long long)idx);
		CHECK(hv_stats_find(pc, key) != NULL);
	}
	json_object_put(o);

	/* block.*: query-blockstats, asked before and after. */
	n = json_object_array_length(bs_after);
	CHECK(n == 1 && stat_u(pc, "block.count") == n);
	CHECK(hv_stats_find(pc, "block.0.name") &&
	      STREQ(hv_stats_find(pc, "block.0.name")->v.s, "drive0"));
	static const char *const fields[][2] = {
		{ "block.0.rd.reqs", "rd_operations" },
		{ "block.0.rd.bytes", "rd_bytes" },
		{ "block.0.rd.times", "rd_total_time_ns" },
		{ "block.0.wr.reqs", "wr_operations" },
		{ "block.0.wr.bytes", "wr_bytes" },
		{ "block.0.wr.times", "wr_total_time_ns" },
		{ "block.0.fl.reqs", "flush_operations" },
		{ "block.0.fl.times", "flush_total_time_ns" },
		{ "block.0.allocation", "wr_highest_offset" },
	};
	for (size_t i = 0; i < sizeof(fields) / sizeof(*fields); i++)
		CHECK(block_between(pc, fields[i][0], bs_before, bs_after,
				    fields[i][1]));
	CHECK(stat_u(pc, "block.0.rd.reqs") > 0); /* the BIOS read it */
	/* query-block's medium, in libvirt's place: right after the name. */
	for (size_t i = 0; i + 1 < pc->n; i++)
		if (STREQ(pc->stats[i].key, "block.0.name"))
			CHECK(STREQ(pc->stats[i + 1].key, "block.0.path") &&
			      STREQ(pc->stats[i + 1].v.s, img));
	CHECK(stat_u(pc, "block.0.capacity") == 8 << 20);

	/* Absent, not zero: QEMU has no network counters to give. */
	CHECK(!has_prefix_key(pc, "net."));

	/* query-stats: whatever QEMU offers (nothing under TCG). */
	o = ask(c, "pc", "query-stats", "{\"target\":\"vm\"}");
	CHECK(has_prefix_key(pc, "vm.") == (json_object_array_length(o) > 0));
	json_object_put(o);
}

int main(void)
{
	char path[300], tcp_qmp[64], drive[400];
	struct hv_conn *c = NULL, *t = NULL;
	struct hv_stats *v = NULL, *one = NULL;
	const struct hv_stats *s;
	json_object *bs_before, *bs_after;
	char *err = NULL;
	uint64_t cpu_before, cpu_after;
	size_t n = 0;
	int64_t t0, took;
	pid_t pc, none, hung, tq;
	int port;

	test_require_qemu();
	dir = test_init("test-hv-qmp-stats");
	snprintf(qdir, sizeof(qdir), "%s/qmp", dir);
	REQUIRE(mkdir(qdir, 0700) == 0);

	snprintf(img, sizeof(img), "%s/disk.img", dir);
	REQUIRE(truncate(img, 0) == 0 || errno == ENOENT);
	{
		FILE *f = fopen(img, "w");

		REQUIRE(f && ftruncate(fileno(f), 8 << 20) == 0);
		fclose(f);
	}
	snprintf(drive, sizeof(drive), "if=none,id=drive0,file=%s,"
		 "format=raw", img);
	snprintf(path, sizeof(path), "%s/pc.qmp", qdir);
	pc = qemu_start_args(path, (const char *const[]){
		"-accel", "tcg", "-machine", "pc", "-m", "64",
		"-smp", "2,maxcpus=4", "-nodefaults", "-display", "none",
		"-device", "virtio-balloon", "-drive", drive,
		"-device", "virtio-blk,drive=drive0", NULL });
	snprintf(path, sizeof(path), "%s/none.qmp", qdir);
	none = qemu_start((const char *const[]){ path, NULL });
	snprintf(path, sizeof(path), "%s/hung.qmp", qdir);
	hung = qemu_start((const char *const[]){ path, NULL });
	snprintf(path, sizeof(path), "%s/off.qmp", qdir);
	dead_socket(path);

	snprintf(path, sizeof(path), "qmp-dir:%s", qdir);
	REQUIRE(hv_open(path, &(struct hv_options){ .timeout_ms = TIMEOUT_MS },
			&c, &err) == 0);
	/* Until the BIOS has read the disk. */
	for (int64_t end = test_now_ms() + 20000; test_now_ms() < end;
	     test_sleep_ms(100)) {
		json_object *o = ask(c, "pc", "query-blockstats", NULL), *e;

		json_object_object_get_ex(json_object_array_get_idx(o, 0),
					  "stats", &e);
		n = u64(e, "rd_operations");
		json_object_put(o);
		if (n > 0)
			break;
	}

	/* All answering. */
	bs_before = ask(c, "pc", "query-blockstats", NULL);
	cpu_before = proc_cpu_ns(pc);
	CHECK(hv_stats_all(c, &v, &n, &err) == 0);
	cpu_after = proc_cpu_ns(pc);
	bs_after = ask(c, "pc", "query-blockstats", NULL);
	CHECK(n == 4);
	for (size_t i = 0; i + 1 < n; i++)
		CHECK(strcmp(v[i].name, v[i + 1].name) < 0);
	s = find_dom(v, n, "pc");
	CHECK(s != NULL);
	if (s)
		check_pc(c, s, pc, cpu_before, cpu_after, bs_before, bs_after);
	json_object_put(bs_before);
	json_object_put(bs_after);
	s = find_dom(v, n, "none");
	CHECK(s && s->error == 0 && stat_u(s, "state.state") == 1);
	/* -machine none: no vCPU, no balloon, no disk; what is absent
	 * stays absent. */
	CHECK(s && stat_u(s, "vcpu.current") == 0 &&
	      !hv_stats_find(s, "vcpu.maximum") &&
	      !hv_stats_find(s, "balloon.current") &&
	      stat_u(s, "block.count") == 0 && hv_stats_find(s, "cpu.time"));
	s = find_dom(v, n, "hung");
	CHECK(s && s->error == 0 && stat_u(s, "state.state") == 1);
	s = find_dom(v, n, "off");
	CHECK(s && s->error == 0 && s->n == 2 &&
	      stat_u(s, "state.state") == HV_STATE_SHUTOFF &&
	      stat_u(s, "state.reason") == 0);
	hv_stats_free(v, n);
	v = NULL;

	/* Paused by us: libvirt's PAUSED, reason USER. */
	CHECK(hv_control(c, "pc", HV_VERB_PAUSE, &err) == 0);
	CHECK(hv_stats(c, "pc", &one, &err) == 0);
	CHECK(one && stat_u(one, "state.state") == HV_STATE_PAUSED &&
	      stat_u(one, "state.reason") == 1);
	hv_stats_free(one, 1);
	one = NULL;
	CHECK(hv_control(c, "pc", HV_VERB_RESUME, &err) == 0);

	/* A hung QEMU costs the deadline, once, and only its own entry. */
	REQUIRE(kill(hung, SIGSTOP) == 0);
	CHECK(wait_state(hung, 'T'));
	t0 = test_now_ms();
	CHECK(hv_stats_all(c, &v, &n, &err) == 0);
	took = test_now_ms() - t0;
	fprintf(stderr, "hv_stats_all with a hung QEMU: %lld ms\n",
		(long long)took);
	CHECK(took >= TIMEOUT_MS - 100 && took < TIMEOUT_MS + 2000);
	s = find_dom(v, n, "hung");
	CHECK(s && s->error == -ETIMEDOUT);
	s = find_dom(v, n, "pc");
	CHECK(s && s->error == 0 && stat_u(s, "vcpu.current") == 2 &&
	      stat_u(s, "state.state") == HV_STATE_RUNNING);
	s = find_dom(v, n, "none");
	CHECK(s && s->error == 0 && stat_u(s, "state.state") == 1);
	hv_stats_free(v, n);
	v = NULL;
	free(err);
	err = NULL;
	CHECK(hv_stats(c, "hung", &one, &err) == -ETIMEDOUT && one == NULL);
	CHECK(err && strstr(err, "hung"));
	free(err);
	err = NULL;
	kill(hung, SIGCONT);
	CHECK(hv_stats(c, "no-such", &one, &err) == -ENOENT && one == NULL);
	free(err);
	err = NULL;

	/* Over TCP the QEMU is not known to be local: no /proc numbers. */
	port = free_port();
	snprintf(tcp_qmp, sizeof(tcp_qmp), "tcp:127.0.0.1:%d,server=on,"
		 "wait=off", port);
	snprintf(path, sizeof(path), "%s/tcp.qmp", dir);
	tq = qemu_start_args(path, (const char *const[]){
		"-machine", "none", "-nodefaults", "-display", "none",
		"-qmp", tcp_qmp, NULL });
	REQUIRE(tcp_listening(port, 10000));
	snprintf(path, sizeof(path), "qmp:t=tcp:127.0.0.1:%d", port);
	REQUIRE(hv_open(path, &(struct hv_options){ .timeout_ms = TIMEOUT_MS },
			&t, &err) == 0);
	CHECK(hv_stats(t, "t", &one, &err) == 0);
	CHECK(one && stat_u(one, "state.state") == 1 &&
	      !hv_stats_find(one, "cpu.time") &&
	      !hv_stats_find(one, "balloon.rss") &&
	      stat_u(one, "block.count") == 0);
	hv_stats_free(one, 1);
	one = NULL;
	hv_close(t);

	/* The QEMU gone, at once and a moment later: shut off. */
	qemu_kill(pc);
	CHECK(hv_stats(c, "pc", &one, &err) == 0);
	if (one && one->n != 2)
		for (size_t i = 0; i < one->n; i++)
			fprintf(stderr, "after the kill: %s\n", one->stats[i].key);
	CHECK(one && one->n == 2 &&
	      stat_u(one, "state.state") == HV_STATE_SHUTOFF);
	hv_stats_free(one, 1);
	one = NULL;
	test_sleep_ms(200);
	CHECK(hv_stats(c, "pc", &one, &err) == 0);
	CHECK(one && one->n == 2 &&
	      stat_u(one, "state.state") == HV_STATE_SHUTOFF);
	hv_stats_free(one, 1);

	hv_close(c);
	qemu_kill(none);
	qemu_kill(hung);
	qemu_kill(tq);
	free(err);
	return check_finish("test-hv-qmp-stats");
}
