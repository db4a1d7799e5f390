/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A domain's life over direct QMP (lib/hv-qmp.c) against real QEMUs:
 * internal snapshots of a TCG PC with a qcow2 disk (create, list, a value
 * written to the disk after the snapshot gone after the revert, delete),
 * with `qemu-img snapshot -l -U` as the oracle; vCPU hot-plug; what the
 * direct driver cannot do (define, undefine, autostart, current: EOPNOTSUPP;
 * a raw disk, a machine without CPU hot-plug); a hung QEMU answers
 * ETIMEDOUT in time.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "hv.h"
#include "testutil.h"

#define TIMEOUT_MS 3000

static const char *dir;
static char img[300];

/* HMP through QMP; the command's output (malloc'd). */
static char *hmp(struct hv_conn *c, const char *name, const char *line)
{
	json_object *args = json_object_new_object(), *o;
	char *json = NULL, *out;

	json_object_object_add(args, "command-line",
			       json_object_new_string(line));
	REQUIRE(hv_qmp_command(c, name, "human-monitor-command",
			       json_object_to_json_string(args), &json,
			       NULL) == 0);
	json_object_put(args);
	o = json_tokener_parse(json);
	REQUIRE(o && json_object_is_type(o, json_type_string));
	out = strdup(json_object_get_string(o));
	json_object_put(o);
	free(json);
	return out;
}

/*
 * Whether the disk's first 4 KiB hold `pattern`: read from the image by
 * qemu-io beside the running QEMU (-U: QEMU holds the lock; HMP's qemu-io
 * prints to QEMU's stdout, not to the monitor).
 */
static bool disk_holds(int pattern)
{
	char cmd[512], out[4096];
	size_t n;
	FILE *f;
	bool ok;

	snprintf(cmd, sizeof(cmd),
		 "qemu-io -U -r -f qcow2 -c 'read -P 0x%02x 0 4k' %s 2>&1",
		 pattern, img);
	f = popen(cmd, "r");
	REQUIRE(f);
	n = fread(out, 1, sizeof(out) - 1, f);
	out[n] = '\0';
	pclose(f);
	ok = strstr(out, "read 4096/4096") && !strstr(out, "failed");
	if (!ok)
		printf("# qemu-io read -P 0x%02x: %s\n", pattern, out);
	return ok;
}

/* Writes the pattern through the running QEMU (HMP's qemu-io) and flushes
 * it to the image. */
static void disk_write(struct hv_conn *c, int pattern)
{
	char line[128];

	snprintf(line, sizeof(line), "qemu-io drive0 \"write -P 0x%02x 0 4k\"",
		 pattern);
	free(hmp(c, "vm", line));
	free(hmp(c, "vm", "qemu-io drive0 flush"));
}

/* The image's snapshot names as `qemu-img snapshot -l` lists them, with
 * -U: the QEMU holds the image's lock. */
static bool image_lists(const char *snap)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd),
		 "qemu-img snapshot -U -l %s | awk 'NR > 2 {print $2}' | "
		 "grep -qx '%s'", img, snap);
	return system(cmd) == 0;
}

static const struct hv_snapshot *find(const struct hv_snapshot *v, size_t n,
				      const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (STREQ(v[i].name, name))
			return &v[i];
	return NULL;
}

static void test_snapshots(struct hv_conn *c)
{
	struct hv_snapshot *s = NULL;
	char *err = NULL, *v = NULL;
	size_t n = 99;
	time_t t0 = time(NULL);
	int64_t t;

	CHECK(hv_snapshots(c, "vm", &s, &n, &err) == 0 && n == 0);
	free(s);
	disk_write(c, 0x55);
	CHECK(disk_holds(0x55));

	t = test_now_ms();
	CHECK(hv_snapshot_create(c, "vm", "s1", "ignored", 0, &err) == 0);
	if (err)
		printf("# snapshot-save: %s\n", err);
	printf("# snapshot-save of a running 32 MiB TCG guest: %lld ms\n",
	       (long long)(test_now_ms() - t));
	CHECK(image_lists("s1"));
	CHECK(hv_snapshots(c, "vm", &s, &n, &err) == 0 && n == 1);
	if (n == 1) {
		CHECK(STREQ(s[0].name, "s1") && s[0].vm_state_size > 0);
		CHECK(STREQ(s[0].state, "running") && !s[0].current &&
		      s[0].parent[0] == '\0');
		CHECK(s[0].created >= t0 - 1 && s[0].created <= time(NULL) + 1);
	}
	free(s);

	/* A value written after the snapshot is gone after the revert. */
	disk_write(c, 0xaa);
	CHECK(disk_holds(0xaa));
	t = test_now_ms();
	CHECK(hv_snapshot_revert(c, "vm", "s1", &err) == 0);
	if (err)
		printf("# snapshot-load: %s\n", err);
	printf("# snapshot-load: %lld ms\n", (long long)(test_now_ms() - t));
	CHECK(disk_holds(0x55));
	CHECK(hv_state(c, "vm", &(enum hv_state){ 0 }, NULL) == 0);
	{
		enum hv_state st = HV_STATE_NOSTATE;

		CHECK(hv_state(c, "vm", &st, NULL) == 0 &&
		      st == HV_STATE_RUNNING);
	}

	/* Bad input, nothing changed. */
	CHECK(hv_snapshot_create(c, "vm", "s1", NULL, 0, &err) == -EEXIST);
	CHECK(hv_snapshot_create(c, "vm", "x/y", NULL, 0, &err) == -EINVAL);
	CHECK(hv_snapshot_create(c, "vm", "s9", NULL, HV_SNAPSHOT_DISK_ONLY,
				 &err) == -EOPNOTSUPP);
	CHECK(hv_snapshot_revert(c, "vm", "nope", &err) == -ENOENT);
	CHECK(hv_snapshot_delete(c, "vm", "nope", &err) == -ENOENT);
	CHECK(hv_snapshots(c, "nosuchvm", &s, &n, &err) == -ENOENT);
	CHECK(!image_lists("s9") && !image_lists("x/y"));
	/* What the direct driver does not have. */
	CHECK(hv_snapshot_current(c, "vm", &v, &err) == -EOPNOTSUPP);
	CHECK(hv_snapshot_parent(c, "vm", "s1", &v, &err) == -EOPNOTSUPP);
	CHECK(hv_snapshot_xml(c, "vm", "s1", &v, &err) == -EOPNOTSUPP);
	CHECK(hv_define(c, "<domain/>", NULL, &err) == -EOPNOTSUPP);
	CHECK(hv_create(c, "<domain/>", NULL, &err) == -EOPNOTSUPP);
	CHECK(hv_redefine(c, "vm", "<domain/>", &err) == -EOPNOTSUPP);
	CHECK(hv_undefine(c, "vm", &err) == -EOPNOTSUPP);
	CHECK(hv_autostart(c, "vm", &(bool){ false }, &err) == -EOPNOTSUPP);
	CHECK(hv_set_autostart(c, "vm", true, &err) == -EOPNOTSUPP);

	/* A second one; delete the first. */
	CHECK(hv_snapshot_create(c, "vm", "s2", NULL, 0, &err) == 0);
	CHECK(hv_snapshot_delete(c, "vm", "s1", &err) == 0);
	CHECK(!image_lists("s1") && image_lists("s2"));
	CHECK(hv_snapshots(c, "vm", &s, &n, &err) == 0 && n == 1 &&
	      find(s, n, "s2"));
	free(s);
	CHECK(hv_snapshot_delete(c, "vm", "s2", &err) == 0);
	CHECK(!image_lists("s2"));
	free(err);
}

static int cpus_now(struct hv_conn *c)
{
	char *json = NULL;
	json_object *o;
	int n;

	REQUIRE(hv_qmp_command(c, "vm", "query-cpus-fast", NULL, &json,
			       NULL) == 0);
	o = json_tokener_parse(json);
	n = (int)json_object_array_length(o);
	json_object_put(o);
	free(json);
	return n;
}

static void test_vcpus(struct hv_conn *c)
{
	struct hv_vcpus v = { 0 };
	char *err = NULL;

	CHECK(hv_vcpus(c, "vm", &v, &err) == 0 && v.current == 1 &&
	      v.maximum == 2);
	CHECK(hv_set_vcpus(c, "vm", 1, &err) == 0); /* as it is */
	CHECK(hv_set_vcpus(c, "vm", 3, &err) == -EINVAL);
	CHECK(cpus_now(c) == 1);
	free(err);
	err = NULL;
	CHECK(hv_set_vcpus(c, "vm", 2, &err) == 0);
	if (err)
		printf("# device_add: %s\n", err);
	CHECK(cpus_now(c) == 2);
	CHECK(hv_vcpus(c, "vm", &v, &err) == 0 && v.current == 2 &&
	      v.maximum == 2);
	CHECK(hv_set_vcpus(c, "vm", 1, &err) == -EOPNOTSUPP);
	CHECK(cpus_now(c) == 2);
	free(err);
}

/* A QEMU with a raw disk and no CPU hot-plug (-machine none); then hung. */
static void test_other(const char *raw_qmp)
{
	struct hv_conn *c = NULL;
	struct hv_snapshot *s = NULL;
	char uri[512], *err = NULL;
	size_t n;
	pid_t pid;
	int64_t t;

	snprintf(uri, sizeof(uri), "%s/raw.img", dir);
	REQUIRE(truncate(uri, 0) == 0 || errno == ENOENT);
	{
		FILE *f = fopen(uri, "w");

		REQUIRE(f && ftruncate(fileno(f), 1 << 20) == 0);
		fclose(f);
	}
	{
		char drive[600];

		snprintf(drive, sizeof(drive),
			 "if=none,id=drive0,file=%s,format=raw", uri);
		pid = qemu_start_args(raw_qmp, (const char *const[]){
			"-machine", "none", "-nodefaults", "-display", "none",
			"-drive", drive, NULL });
	}
	snprintf(uri, sizeof(uri), "qmp:raw=unix:%s", raw_qmp);
	REQUIRE(hv_open(uri, &(struct hv_options){ .timeout_ms = TIMEOUT_MS },
			&c, &err) == 0);
	CHECK(hv_snapshot_create(c, "raw", "s1", NULL, 0, &err) ==
	      -EOPNOTSUPP);
	CHECK(err && strstr(err, "qcow2"));
	printf("# raw disk: %s\n", err ? err : "");
	CHECK(hv_snapshots(c, "raw", &s, &n, &err) == 0 && n == 0);
	free(s);
	CHECK(hv_set_vcpus(c, "raw", 2, &err) == -EOPNOTSUPP);

	/* Hung: every call fails within its deadline. */
	REQUIRE(kill(pid, SIGSTOP) == 0);
	t = test_now_ms();
	CHECK(hv_snapshot_create(c, "raw", "s1", NULL, 0, &err) ==
	      -ETIMEDOUT);
	CHECK(hv_vcpus(c, "raw", &(struct hv_vcpus){ 0 }, &err) ==
	      -ETIMEDOUT);
	t = test_now_ms() - t;
	printf("# two calls to a hung QEMU: %lld ms\n", (long long)t);
	CHECK(t < 4 * TIMEOUT_MS);
	kill(pid, SIGCONT);
	hv_close(c);
	qemu_kill(pid);
	free(err);
}

int main(void)
{
	struct hv_conn *c = NULL;
	char path[400], drive[400], uri[420], *out = NULL, *err = NULL;

	test_require_qemu();
	dir = test_init("test-hv-qmp-life");
	snprintf(img, sizeof(img), "%s/disk.qcow2", dir);
	snprintf(path, sizeof(path), "qemu-img create -q -f qcow2 %s 16M",
		 img);
	REQUIRE(system(path) == 0);
	snprintf(drive, sizeof(drive),
		 "if=none,id=drive0,file=%s,format=qcow2", img);
	snprintf(path, sizeof(path), "%s/vm.qmp", dir);
	qemu_start_args(path, (const char *const[]){
		"-accel", "tcg", "-machine", "pc", "-m", "32",
		"-smp", "1,maxcpus=2", "-nodefaults", "-display", "none",
		"-drive", drive, "-device", "virtio-blk-pci,drive=drive0",
		NULL });
	snprintf(uri, sizeof(uri), "qmp:vm=unix:%s", path);
	REQUIRE(hv_open(uri, &(struct hv_options){ .timeout_ms = TIMEOUT_MS },
			&c, &err) == 0);
	out = hmp(c, "vm", "info version");
	printf("# QEMU %s\n", out);
	free(out);

	test_snapshots(c);
	test_vcpus(c);
	hv_close(c);
	snprintf(path, sizeof(path), "%s/raw.qmp", dir);
	test_other(path);
	free(err);
	return check_finish("test-hv-qmp-life");
}
