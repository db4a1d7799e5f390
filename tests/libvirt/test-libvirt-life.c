/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A domain's life through hv.h against the tests' private libvirtd
 * ($HVFS_TEST_LIBVIRTD; meson runs this under `tests/libvirtd.sh run`), with
 * virsh as the oracle (list --all, dumpxml, dominfo, vcpucount,
 * snapshot-list, snapshot-current): define, every bad input with its errno
 * and nothing changed, two writers of one name, redefine, autostart, vCPUs,
 * snapshots and their events, undefine with UEFI nvram, a managed save
 * image and snapshot metadata. Root; TCG (no KVM needed). Creates domains
 * named hvt-lf-<pid>-* and removes them on every exit.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "hv.h"
#include "lvutil.h"
#include "../check.h"

static char uri[320], dir[128], prefix[64];
static const char *lvdir;
static struct hv_conn *conn;

static void cleanup(void)
{
	char *names = NULL;

	if (!prefix[0])
		return;
	sh(&names, "virsh -q -c \"$HVT_URI\" list --all --name | grep '^%s'",
	   prefix);
	for (char *save = NULL, *n = strtok_r(names, "\n", &save); n;
	     n = strtok_r(NULL, "\n", &save)) {
		sh(NULL, "virsh -q -c \"$HVT_URI\" destroy %s >/dev/null 2>&1",
		   n);
		sh(NULL, "virsh -q -c \"$HVT_URI\" undefine --nvram "
			 "--managed-save --snapshots-metadata %s >/dev/null "
			 "2>&1", n);
	}
	free(names);
	if (dir[0])
		sh(NULL, "rm -rf '%s'", dir);
}

static void on_signal(int sig)
{
	cleanup();
	_exit(128 + sig);
}

/* ---- domains and the oracle ---- */

/* A domain's XML: TCG, 32 MiB, one vCPU of two, and a qcow2 disk (made
 * now) when disk is true; `os` is extra <os> content. */
static char *domain_xml(const char *name, const char *uuid, bool disk,
			const char *os)
{
	char *xml = NULL, diskxml[512] = "";

	if (disk) {
		REQUIRE(sh(NULL, "qemu-img create -q -f qcow2 %s/%s.qcow2 16M",
			   dir, name) == 0);
		snprintf(diskxml, sizeof(diskxml),
			 "<disk type='file' device='disk'><driver name='qemu' "
			 "type='qcow2'/><source file='%s/%s.qcow2'/>"
			 "<target dev='vda' bus='virtio'/></disk>", dir, name);
	}
	REQUIRE(asprintf(&xml,
		"<domain type='qemu'><name>%s</name>%s%s%s"
		"<memory unit='MiB'>32</memory>"
		"<vcpu placement='static' current='1'>2</vcpu>"
		"<os><type arch='x86_64' machine='pc'>hvm</type>%s</os>"
		"<features><acpi/></features><devices><emulator>/usr/bin/qemu-system-x86_64</emulator>"
		"%s</devices></domain>",
		name, uuid ? "<uuid>" : "", uuid ? uuid : "",
		uuid ? "</uuid>" : "", os ? os : "", diskxml) > 0);
	return xml;
}

static bool listed(const char *name)
{
	return sh(NULL, "virsh -q -c \"$HVT_URI\" list --all --name | "
			"grep -qx '%s'", name) == 0;
}

/* One line's value of `virsh dominfo` ("Autostart", "State", ...). */
static char *dominfo(const char *name, const char *key)
{
	char *v = NULL;

	sh(&v, "virsh -c \"$HVT_URI\" dominfo %s | sed -n 's/^%s: *//p'",
	   name, key);
	return v;
}

static bool dominfo_is(const char *name, const char *key, const char *want)
{
	char *v = dominfo(name, key);
	bool ok = v && !strcmp(v, want);

	if (!ok)
		fprintf(stderr, "# dominfo %s %s: '%s', not '%s'\n", name, key,
			v ? v : "", want);
	free(v);
	return ok;
}

static char *virsh_uuid(const char *name)
{
	char *v = NULL;

	sh(&v, "virsh -q -c \"$HVT_URI\" domuuid %s", name);
	return v;
}

/* err holds a message; it is freed and reset. */
static bool said(char **err)
{
	bool ok = *err && **err;

	if (ok)
		fprintf(stderr, "# error: %s\n", *err);
	free(*err);
	*err = NULL;
	return ok;
}

/* ---- define, bad input, redefine ---- */

static void test_define(const char *d0)
{
	char *xml = domain_xml(d0, NULL, true, NULL), *xml2 = NULL;
	char *name = NULL, *err = NULL, *uuid, *u2;

	CHECK(hv_define(conn, xml, &name, &err) == 0);
	CHECK(name && !strcmp(name, d0));
	free(name);
	CHECK(listed(d0));
	CHECK(dominfo_is(d0, "Persistent", "yes"));
	CHECK(dominfo_is(d0, "State", "shut off"));
	uuid = virsh_uuid(d0);

	/* The same name again, without a uuid and with the same uuid. */
	CHECK(hv_define(conn, xml, NULL, &err) == -EEXIST && said(&err));
	free(xml);
	xml = domain_xml(d0, uuid, false, NULL);
	CHECK(hv_define(conn, xml, NULL, &err) == -EEXIST && said(&err));
	free(xml);
	/* d0's uuid under another name: libvirt's refusal. */
	REQUIRE(asprintf(&name, "%s-x", d0) > 0);
	xml = domain_xml(name, uuid, false, NULL);
	CHECK(hv_define(conn, xml, NULL, &err) == -EEXIST && said(&err));
	CHECK(!listed(name));
	free(xml);
	/* Bad XML: malformed, and against the schema. */
	REQUIRE(asprintf(&xml, "<domain type='qemu'><name>%s</name>", name) >
		0);
	CHECK(hv_define(conn, xml, NULL, &err) == -EINVAL && said(&err));
	free(xml);
	REQUIRE(asprintf(&xml, "<domain type='qemu'><name>%s</name>"
			       "<memory>lots</memory><os><type>hvm</type>"
			       "</os></domain>", name) > 0);
	CHECK(hv_define(conn, xml, NULL, &err) == -EINVAL && said(&err));
	CHECK(!listed(name));
	free(xml);
	free(name);
	u2 = virsh_uuid(d0);
	CHECK(u2 && uuid && !strcmp(u2, uuid)); /* nothing changed */
	free(u2);

	/* Redefine: libvirt's XML with a description added. */
	CHECK(hv_xml(conn, d0, &xml, &err) == 0);
	REQUIRE(xml && strstr(xml, "</name>"));
	REQUIRE(asprintf(&xml2, "%.*s<description>hvt-edited &amp; "
				"seen</description>%s",
			 (int)(strstr(xml, "</name>") + 7 - xml), xml,
			 strstr(xml, "</name>") + 7) > 0);
	CHECK(hv_redefine(conn, d0, xml2, &err) == 0);
	CHECK(sh(NULL, "virsh -c \"$HVT_URI\" dumpxml %s | grep -q "
		       "'<description>hvt-edited &amp; seen</description>'",
		 d0) == 0);
	free(xml2);
	/* Redefine with another name, another uuid, no uuid, bad XML. */
	CHECK(hv_redefine(conn, "hvt-lf-other", xml, &err) == -EINVAL &&
	      said(&err));
	xml2 = domain_xml(d0, "00000000-1111-2222-3333-444444444444", false,
			  NULL);
	CHECK(hv_redefine(conn, d0, xml2, &err) == -EINVAL && said(&err));
	free(xml2);
	xml2 = domain_xml(d0, NULL, false, NULL);
	CHECK(hv_redefine(conn, d0, xml2, &err) == -EINVAL && said(&err));
	free(xml2);
	REQUIRE(asprintf(&xml2, "<domain type='qemu'><name>%s</name><uuid>%s"
				"</uuid><memory>lots</memory></domain>", d0,
			 uuid) > 0);
	CHECK(hv_redefine(conn, d0, xml2, &err) == -EINVAL && said(&err));
	free(xml2);
	CHECK(hv_redefine(conn, "hvt-lf-no-such", xml, &err) == -EINVAL);
	free(err);
	err = NULL;
	CHECK(sh(NULL, "virsh -c \"$HVT_URI\" dumpxml %s | grep -q "
		       "hvt-edited", d0) == 0); /* unchanged */
	free(xml);
	free(uuid);
}

/* Two writers define one name at once: one wins, one gets EEXIST. */
struct racer {
	struct hv_conn *c;
	const char *xml;
	pthread_barrier_t *go;
	int r;
};

static void *race(void *arg)
{
	struct racer *r = arg;

	pthread_barrier_wait(r->go);
	r->r = hv_define(r->c, r->xml, NULL, NULL);
	return NULL;
}

static void test_race(const char *name, bool two_connections)
{
	char *xml = domain_xml(name, NULL, false, NULL);
	struct hv_conn *c2 = conn;
	pthread_barrier_t go;
	struct racer r[2];
	pthread_t t[2];

	if (two_connections)
		REQUIRE(hv_open(uri, NULL, &c2, NULL) == 0);
	pthread_barrier_init(&go, NULL, 2);
	for (int i = 0; i < 2; i++) {
		r[i] = (struct racer){ i ? c2 : conn, xml, &go, 1 };
		pthread_create(&t[i], NULL, race, &r[i]);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	printf("# race (%s): %d %d\n", two_connections ? "two connections" :
	       "one connection", r[0].r, r[1].r);
	CHECK((r[0].r == 0 && r[1].r == -EEXIST) ||
	      (r[1].r == 0 && r[0].r == -EEXIST));
	CHECK(listed(name));
	pthread_barrier_destroy(&go);
	if (two_connections)
		hv_close(c2);
	free(xml);
}

/* ---- autostart, vCPUs, transient domains ---- */

static void test_autostart(const char *d0)
{
	char *err = NULL;
	bool on = true;

	CHECK(hv_autostart(conn, d0, &on, &err) == 0 && !on);
	CHECK(hv_set_autostart(conn, d0, true, &err) == 0);
	CHECK(dominfo_is(d0, "Autostart", "enable"));
	CHECK(hv_autostart(conn, d0, &on, &err) == 0 && on);
	CHECK(hv_set_autostart(conn, d0, false, &err) == 0);
	CHECK(dominfo_is(d0, "Autostart", "disable"));
	CHECK(hv_autostart(conn, "hvt-lf-no-such", &on, &err) == -ENOENT);
	free(err);
}

static bool vcpucount_is(const char *name, const char *which, int want)
{
	char *v = NULL;
	bool ok;

	sh(&v, "virsh -q -c \"$HVT_URI\" vcpucount %s %s", name, which);
	ok = v && atoi(v) == want;
	if (!ok)
		fprintf(stderr, "# vcpucount %s %s: '%s', not %d\n", name,
			which, v ? v : "", want);
	free(v);
	return ok;
}

static void test_vcpus(const char *d0)
{
	struct hv_vcpus v = { 0 };
	char *err = NULL;

	CHECK(hv_vcpus(conn, d0, &v, &err) == 0);
	CHECK(v.current == 1 && v.maximum == 2);
	CHECK(vcpucount_is(d0, "--config --current", 1));
	/* Shut off: nothing to plug into. */
	CHECK(hv_set_vcpus(conn, d0, 2, &err) == -EBUSY && said(&err));
	REQUIRE(sh(NULL, "virsh -q -c \"$HVT_URI\" start %s >/dev/null",
		   d0) == 0);
	free(err);
}

/* d0 runs: one vCPU more, by hot-plug. (After the snapshots: libvirt
 * 9.0 cannot revert a running snapshot taken with a hot-plugged vCPU, its
 * QEMU starts with the defined count and refuses the saved state.) */
static void test_vcpus_live(const char *d0)
{
	struct hv_vcpus v = { 0 };
	char *err = NULL;

	CHECK(hv_vcpus(conn, d0, &v, &err) == 0);
	CHECK(v.current == 1 && v.maximum == 2);
	CHECK(hv_set_vcpus(conn, d0, 2, &err) == 0);
	if (err)
		fprintf(stderr, "# set_vcpus: %s\n", err);
	CHECK(vcpucount_is(d0, "--live --active", 2));
	CHECK(hv_vcpus(conn, d0, &v, &err) == 0);
	CHECK(v.current == 2 && v.maximum == 2);
	CHECK(hv_set_vcpus(conn, d0, 3, &err) == -EINVAL && said(&err));
	CHECK(hv_set_vcpus(conn, d0, 0, &err) == -EINVAL && said(&err));
	CHECK(vcpucount_is(d0, "--live --active", 2));
	CHECK(vcpucount_is(d0, "--config --current", 1)); /* live only */
	free(err);
}

/* d0 runs. A transient domain: create, the operations its being transient
 * or running forbids, gone when it stops. */
static void test_transient(const char *d0, const char *t0)
{
	char *xml = NULL, *name = NULL, *err = NULL;

	/* d0's own XML while it runs: libvirt's "already active". */
	CHECK(hv_xml(conn, d0, &xml, &err) == 0);
	CHECK(hv_create(conn, xml, NULL, &err) == -EBUSY && said(&err));
	CHECK(dominfo_is(d0, "State", "running"));
	free(xml);

	xml = domain_xml(t0, NULL, false, NULL);
	CHECK(hv_create(conn, xml, &name, &err) == 0);
	CHECK(name && !strcmp(name, t0));
	CHECK(dominfo_is(t0, "Persistent", "no"));
	CHECK(dominfo_is(t0, "State", "running"));
	/* Its name again (another uuid: the XML has none). */
	CHECK(hv_create(conn, xml, NULL, &err) == -EEXIST && said(&err));
	CHECK(hv_undefine(conn, t0, &err) == -EBUSY && said(&err));
	CHECK(hv_set_autostart(conn, t0, true, &err) < 0 && said(&err));
	CHECK(listed(t0));
	CHECK(hv_control(conn, t0, HV_VERB_DESTROY, &err) == 0);
	CHECK(!listed(t0));
	free(name);
	free(xml);
	free(err);
}

/* ---- snapshots ---- */

static pthread_mutex_t ev_lock = PTHREAD_MUTEX_INITIALIZER;
static char ev_log[16384];

static void on_event(void *ud, const struct hv_event *ev)
{
	const char *want = ud;
	size_t n;

	if (!ev->domain || strcmp(ev->domain, want) || !ev->data_json)
		return;
	pthread_mutex_lock(&ev_lock);
	n = strlen(ev_log);
	snprintf(ev_log + n, sizeof(ev_log) - n, "%s\n", ev->data_json);
	pthread_mutex_unlock(&ev_lock);
}

static bool event_seen(const char *text, int ms)
{
	for (int t = 0; t < ms; t += 50) {
		bool found;

		pthread_mutex_lock(&ev_lock);
		found = strstr(ev_log, text) != NULL;
		pthread_mutex_unlock(&ev_lock);
		if (found)
			return true;
		usleep(50 * 1000);
	}
	return false;
}

static char *snapshot_current_virsh(const char *d)
{
	char *v = NULL;

	sh(&v, "virsh -q -c \"$HVT_URI\" snapshot-current --name %s", d);
	return v;
}

static bool snapshot_listed(const char *d, const char *snap)
{
	return sh(NULL, "virsh -q -c \"$HVT_URI\" snapshot-list --name %s | "
			"grep -qx '%s'", d, snap) == 0;
}

static void test_snapshots(const char *d0)
{
	struct hv_snapshot *s = NULL;
	char *err = NULL, *v = NULL, *xml = NULL;
	size_t n = 99;
	time_t t0 = time(NULL);

	CHECK(hv_snapshots(conn, d0, &s, &n, &err) == 0 && n == 0 && !s);
	CHECK(hv_snapshot_current(conn, d0, &v, &err) == -ENOENT &&
	      said(&err));
	/* d0 runs: a full snapshot (disk and memory), then a child. */
	CHECK(hv_snapshot_create(conn, d0, "s1", "first <one>", 0, &err) ==
	      0);
	if (err)
		fprintf(stderr, "# snapshot s1: %s\n", err);
	CHECK(snapshot_listed(d0, "s1"));
	v = snapshot_current_virsh(d0);
	CHECK(v && !strcmp(v, "s1"));
	free(v);
	CHECK(hv_snapshot_create(conn, d0, "s2", NULL, 0, &err) == 0);
	CHECK(sh(&v, "virsh -q -c \"$HVT_URI\" snapshot-list --tree %s",
		 d0) == 0);
	fprintf(stderr, "# snapshot-list --tree:\n%s\n", v);
	free(v);
	v = NULL;
	CHECK(sh(&v, "virsh -q -c \"$HVT_URI\" snapshot-parent --snapshotname "
		     "s2 %s", d0) == 0 && !strcmp(v, "s1"));
	free(v);
	v = NULL;

	CHECK(hv_snapshots(conn, d0, &s, &n, &err) == 0 && n == 2);
	if (n == 2) {
		CHECK(!strcmp(s[0].name, "s1") && !strcmp(s[1].name, "s2"));
		CHECK(s[0].parent[0] == '\0' && !strcmp(s[1].parent, "s1"));
		CHECK(!s[0].current && s[1].current);
		CHECK(!strcmp(s[0].state, "running") &&
		      !strcmp(s[1].state, "running"));
		CHECK(s[0].created >= t0 - 1 &&
		      s[1].created <= time(NULL) + 1);
	}
	free(s);
	CHECK(hv_snapshot_current(conn, d0, &v, &err) == 0 &&
	      !strcmp(v, "s2"));
	free(v);
	CHECK(hv_snapshot_parent(conn, d0, "s2", &v, &err) == 0 &&
	      !strcmp(v, "s1"));
	free(v);
	CHECK(hv_snapshot_parent(conn, d0, "s1", &v, &err) == -ENOENT &&
	      said(&err));
	CHECK(hv_snapshot_xml(conn, d0, "s1", &xml, &err) == 0);
	CHECK(xml && strstr(xml, "<name>s1</name>") &&
	      strstr(xml, "<description>first &lt;one&gt;</description>"));
	free(xml);

	/* Bad input, nothing changed. */
	CHECK(hv_snapshot_create(conn, d0, "s1", NULL, 0, &err) == -EEXIST &&
	      said(&err));
	CHECK(hv_snapshot_create(conn, d0, "a/b", NULL, 0, &err) == -EINVAL &&
	      said(&err));
	CHECK(hv_snapshot_create(conn, d0, "", NULL, 0, &err) == -EINVAL);
	CHECK(hv_snapshot_revert(conn, d0, "nope", &err) == -ENOENT &&
	      said(&err));
	CHECK(hv_snapshot_delete(conn, d0, "nope", &err) == -ENOENT &&
	      said(&err));
	CHECK(hv_snapshot_xml(conn, d0, "nope", &xml, &err) == -ENOENT);
	CHECK(hv_snapshots(conn, "hvt-lf-no-such", &s, &n, &err) == -ENOENT);
	free(err);
	err = NULL;
	v = snapshot_current_virsh(d0);
	CHECK(v && !strcmp(v, "s2"));
	free(v);

	/* Revert: current moves, an event says from_snapshot. */
	CHECK(hv_snapshot_revert(conn, d0, "s1", &err) == 0);
	if (err)
		fprintf(stderr, "# revert: %s\n", err);
	v = snapshot_current_virsh(d0);
	CHECK(v && !strcmp(v, "s1"));
	free(v);
	CHECK(dominfo_is(d0, "State", "running"));
	CHECK(event_seen("\"reason\":\"from_snapshot\"", 10000));
	pthread_mutex_lock(&ev_lock);
	for (char *save = NULL, *l = strtok_r(ev_log, "\n", &save); l;
	     l = strtok_r(NULL, "\n", &save))
		printf("# event: %s\n", l);
	ev_log[0] = '\0';
	pthread_mutex_unlock(&ev_lock);

	/* Delete. */
	CHECK(hv_snapshot_delete(conn, d0, "s2", &err) == 0);
	CHECK(!snapshot_listed(d0, "s2") && snapshot_listed(d0, "s1"));
	CHECK(hv_snapshots(conn, d0, &s, &n, &err) == 0 && n == 1);
	free(s);

	/* Disk only: an external snapshot, an overlay beside the image. */
	CHECK(hv_snapshot_create(conn, d0, "disk1", NULL,
				 HV_SNAPSHOT_DISK_ONLY, &err) == 0);
	if (err)
		fprintf(stderr, "# disk-only: %s\n", err);
	CHECK(sh(NULL, "virsh -q -c \"$HVT_URI\" snapshot-info --snapshotname "
		       "disk1 %s | grep -q '^State: *disk-snapshot'", d0) == 0);
	CHECK(sh(NULL, "virsh -q -c \"$HVT_URI\" snapshot-info --snapshotname "
		       "disk1 %s | grep -q '^Location: *external'", d0) == 0);
	CHECK(hv_snapshots(conn, d0, &s, &n, &err) == 0 && n == 2 &&
	      !strcmp(s[1].name, "disk1") &&
	      !strcmp(s[1].state, "disk-snapshot") &&
	      !strcmp(s[1].parent, "s1") && s[1].current);
	free(s);
	free(err);
}

/* A domain without disks: libvirt has nothing to snapshot, running or
 * not. */
static void test_snapshot_nodisk(const char *d)
{
	char *err = NULL;

	CHECK(hv_snapshot_create(conn, d, "x", NULL, 0, &err) == -EOPNOTSUPP &&
	      said(&err));
	CHECK(!snapshot_listed(d, "x"));
}

/* ---- undefine ---- */

/* d0 runs and has snapshot metadata: undefined, it lives on transient and
 * leaves when it stops. */
static void test_undefine_running(const char *d0)
{
	char *err = NULL;

	CHECK(hv_undefine(conn, d0, &err) == 0);
	if (err)
		fprintf(stderr, "# undefine: %s\n", err);
	CHECK(dominfo_is(d0, "Persistent", "no"));
	CHECK(dominfo_is(d0, "State", "running"));
	CHECK(hv_control(conn, d0, HV_VERB_DESTROY, &err) == 0);
	CHECK(!listed(d0));
	CHECK(hv_undefine(conn, d0, &err) == -ENOENT && said(&err));
}

/* A shut-off domain with an internal snapshot: undefined, the snapshot
 * stays in its image. */
static void test_undefine_snapshots(const char *d)
{
	char *xml = domain_xml(d, NULL, true, NULL), *err = NULL;

	REQUIRE(hv_define(conn, xml, NULL, &err) == 0);
	CHECK(hv_snapshot_create(conn, d, "off1", NULL, 0, &err) == 0);
	if (err)
		fprintf(stderr, "# snapshot of a shut-off domain: %s\n", err);
	CHECK(snapshot_listed(d, "off1"));
	/* libvirt alone refuses: the case users trip on. */
	CHECK(sh(NULL, "virsh -q -c \"$HVT_URI\" undefine %s 2>&1 | "
		       "grep -q snapshot", d) == 0);
	CHECK(listed(d));
	CHECK(hv_undefine(conn, d, &err) == 0);
	CHECK(!listed(d));
	CHECK(sh(NULL, "qemu-img snapshot -l %s/%s.qcow2 | grep -qw off1",
		 dir, d) == 0);
	free(xml);
	free(err);
}

/* UEFI with a variable store libvirt made from OVMF's template: undefined
 * with it. */
static void test_undefine_nvram(const char *d)
{
	char *xml, *err = NULL, *nvram = NULL, *host = NULL;
	struct stat st;

	if (stat("/usr/share/OVMF/OVMF_CODE_4M.fd", &st) < 0) {
		fprintf(stderr, "# no OVMF: install Debian's ovmf "
				"(tests/setup-host.sh)\n");
		CHECK(!"OVMF installed");
		return;
	}
	xml = domain_xml(d, NULL, false,
			 "<loader readonly='yes' type='pflash'>"
			 "/usr/share/OVMF/OVMF_CODE_4M.fd</loader>"
			 "<nvram template='/usr/share/OVMF/OVMF_VARS_4M.fd'/>");
	if (hv_define(conn, xml, NULL, &err) < 0)
		fprintf(stderr, "# define: %s\n", err);
	REQUIRE(listed(d));
	/* libvirt makes the store from the template when it first starts. */
	CHECK(hv_control(conn, d, HV_VERB_START, &err) == 0);
	CHECK(hv_control(conn, d, HV_VERB_DESTROY, &err) == 0);
	sh(&nvram, "virsh -c \"$HVT_URI\" dumpxml %s | "
		   "sed -n 's|.*<nvram[^>]*>\\(.*\\)</nvram>.*|\\1|p'", d);
	REQUIRE(nvram && nvram[0] == '/');
	/* libvirtd sees /var/lib/libvirt as our instance's lib/. */
	REQUIRE(!strncmp(nvram, "/var/lib/libvirt/", 17));
	REQUIRE(asprintf(&host, "%s/lib/%s", lvdir, nvram + 17) > 0);
	CHECK(stat(host, &st) == 0);
	/* libvirt alone refuses ("cannot undefine domain with nvram"). */
	CHECK(sh(NULL, "virsh -q -c \"$HVT_URI\" undefine %s 2>&1 | "
		       "grep -q nvram", d) == 0);
	CHECK(listed(d));
	CHECK(hv_undefine(conn, d, &err) == 0);
	if (err)
		fprintf(stderr, "# undefine nvram: %s\n", err);
	CHECK(!listed(d));
	CHECK(stat(host, &st) < 0 && errno == ENOENT);
	free(host);
	free(nvram);
	free(xml);
	free(err);
}

/* A managed save image holds the guest's memory: refused, nothing
 * changed. */
static void test_undefine_managed_save(const char *d)
{
	char *xml = domain_xml(d, NULL, false, NULL), *err = NULL;

	REQUIRE(hv_define(conn, xml, NULL, &err) == 0);
	REQUIRE(hv_control(conn, d, HV_VERB_START, &err) == 0);
	REQUIRE(sh(NULL, "virsh -q -c \"$HVT_URI\" managedsave %s >/dev/null",
		   d) == 0);
	CHECK(dominfo_is(d, "Managed save", "yes"));
	CHECK(hv_undefine(conn, d, &err) == -EBUSY);
	CHECK(err && strstr(err, "managed save"));
	said(&err);
	CHECK(listed(d) && dominfo_is(d, "Managed save", "yes"));
	free(xml);
}

int main(void)
{
	char d0[96], d1[96], d2[96], t0[96], dn[96], dm[96], ds[96];
	struct stat st;
	char *err = NULL;

	lvdir = getenv("HVFS_TEST_LIBVIRTD");
	if (stat("/usr/sbin/libvirtd", &st) < 0) {
		fprintf(stderr, "no libvirtd on this machine\n");
		return 77;
	}
	if (!lvdir) {
		fprintf(stderr, "no private libvirtd: run me as "
				"`tests/libvirtd.sh run test-libvirt-life`\n");
		return 1;
	}
	snprintf(uri, sizeof(uri),
		 "qemu+unix:///system?socket=%s/run/libvirt-sock", lvdir);
	setenv("HVT_URI", uri, 1);
	setenv("LC_ALL", "C", 1);
	snprintf(dir, sizeof(dir), "/tmp/hvt-lf-%d", (int)getpid());
	REQUIRE(mkdir(dir, 0755) == 0);
	snprintf(prefix, sizeof(prefix), "hvt-lf-%d-", (int)getpid());
	atexit(cleanup);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	snprintf(d0, sizeof(d0), "%sd0", prefix);
	snprintf(d1, sizeof(d1), "%srace1", prefix);
	snprintf(d2, sizeof(d2), "%srace2", prefix);
	snprintf(t0, sizeof(t0), "%stransient", prefix);
	snprintf(dn, sizeof(dn), "%snvram", prefix);
	snprintf(dm, sizeof(dm), "%smanaged", prefix);
	snprintf(ds, sizeof(ds), "%ssnapmeta", prefix);

	REQUIRE(hv_open(uri, &(struct hv_options){ .timeout_ms = 60000 },
			&conn, &err) == 0);
	REQUIRE(hv_subscribe(conn, on_event, d0) == 0);
	test_define(d0);
	test_race(d1, false);
	test_race(d2, true);
	test_autostart(d0);
	test_vcpus(d0);       /* leaves d0 running */
	test_transient(d0, t0);
	test_snapshots(d0);
	test_snapshot_nodisk(d1);
	test_vcpus_live(d0);
	test_undefine_running(d0);
	test_undefine_snapshots(ds);
	test_undefine_nvram(dn);
	test_undefine_managed_save(dm);
	hv_close(conn);
	free(err);
	return check_finish("test-libvirt-life");
}
