/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The guest agent through the libvirt driver (hv_agent_*), against the real
 * tiny guest (tests/guest) as a TCG domain hvt-ag-<pid> of the tests'
 * private libvirtd ($HVFS_TEST_LIBVIRTD; meson runs this under
 * `tests/libvirtd.sh run`), with `virsh qemu-agent-command` and `virsh
 * domifaddr --source agent` as oracles. Then the agent is killed inside the
 * guest: an agent-lifecycle event says disconnected, the state reads so,
 * calls fail at once with ENODATA; started again on the serial console
 * (libvirt's pty), it is connected again. Root.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "hv.h"
#include "../check.h"
#include "lvutil.h"
#include "../guest/guest.h"

static char dom[64], xml_path[128];

static int64_t now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
	struct timespec t = { ms / 1000, (long)(ms % 1000) * 1000000 };

	nanosleep(&t, NULL);
}

static void cleanup(void)
{
	if (!dom[0])
		return;
	sh(NULL, "virsh -q -c \"$HVT_URI\" destroy %s >/dev/null 2>&1", dom);
	sh(NULL, "virsh -q -c \"$HVT_URI\" undefine %s >/dev/null 2>&1", dom);
	unlink(xml_path);
}

static void on_signal(int sig)
{
	cleanup();
	_exit(128 + sig);
}

/* ---- oracles ---- */

/* `virsh qemu-agent-command DOM CMD`'s "return" (a reference), or NULL. */
static json_object *virsh_agent(const char *cmd)
{
	json_object *o, *v = NULL;
	char *out = NULL;

	if (sh(&out, "virsh -q -c \"$HVT_URI\" qemu-agent-command %s '%s'",
	       dom, cmd) != 0) {
		free(out);
		return NULL;
	}
	o = json_tokener_parse(out);
	free(out);
	if (o && json_object_object_get_ex(o, "return", &v))
		json_object_get(v);
	json_object_put(o);
	return v;
}

/* `virsh domifaddr --source agent` as "IFACE ADDR/PREFIX\n" lines. */
static char *virsh_addresses(void)
{
	char *out = NULL, *res = NULL, iface[64] = "";
	size_t len = 0;
	FILE *m = open_memstream(&res, &len);

	sh(&out, "virsh -c \"$HVT_URI\" domifaddr --source agent %s", dom);
	for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
		char name[64], mac[64], proto[16], addr[128];

		if (sscanf(line, " %63s %63s %15s %127s", name, mac, proto,
			   addr) != 4 || (strcmp(proto, "ipv4") &&
					  strcmp(proto, "ipv6")))
			continue;
		if (strcmp(name, "-"))
			snprintf(iface, sizeof(iface), "%s", name);
		fprintf(m, "%s %s\n", iface, addr);
	}
	fclose(m);
	free(out);
	out = NULL;
	return res;
}

/*
 * The guest's serial console (libvirt's pty), read all along by a thread:
 * nobody reading it would let its buffer fill and stall the guest's shell.
 */
static int console_fd = -1;

static void *drain_console(void *arg)
{
	char buf[4096];

	(void)arg;
	for (;;) {
		ssize_t n = read(console_fd, buf, sizeof(buf));

		if (n < 0 && errno != EINTR && errno != EAGAIN)
			return NULL;
		if (n == 0)
			sleep_ms(50);
	}
}

static void console_open(void)
{
	char *pty = NULL;
	pthread_t t;

	sh(&pty, "virsh -c \"$HVT_URI\" ttyconsole %s", dom);
	REQUIRE(pty && *pty);
	console_fd = open(pty, O_RDWR | O_NOCTTY);
	REQUIRE(console_fd >= 0);
	free(pty);
	REQUIRE(pthread_create(&t, NULL, drain_console, NULL) == 0);
	pthread_detach(t);
}

/* Types a line on the guest's serial console. */
static void type_line(const char *line)
{
	REQUIRE(write(console_fd, line, strlen(line)) ==
		(ssize_t)strlen(line));
	REQUIRE(write(console_fd, "\n", 1) == 1);
}

/* ---- the test ---- */

static void checks(struct hv_conn *c)
{
	struct hv_agent_exec_result res = { 0 };
	const char *echo[] = { "echo", "hi", NULL };
	const char *exit3[] = { "sh", "-c", "exit 3", NULL };
	const char *kill_agent[] = { "sh", "-c", "(sleep 1; killall qemu-ga) "
				     "</dev/null >/dev/null 2>&1 &", NULL };
	json_object *o, *p = NULL;
	char *out = NULL, *e = NULL, *reply = NULL, *v;
	bool connected = false;
	enum hv_state st;
	int64_t t0;
	int r, n = -1;

	r = hv_agent_command(c, dom, "{\"execute\":\"guest-ping\"}", 0, &reply,
			     &e);
	CHECK(r == 0 && reply && strstr(reply, "\"return\""));
	free(reply);
	reply = NULL;
	r = hv_agent_command(c, dom, "{\"execute\":\"no-such-command\"}", 0,
			     &reply, &e);
	CHECK(r == 0 && reply && strstr(reply, "\"error\""));
	free(reply);

	r = hv_agent_info(c, dom, HV_AGENT_HOSTNAME, &out, &e);
	o = virsh_agent("{\"execute\":\"guest-get-host-name\"}");
	CHECK(o && json_object_object_get_ex(o, "host-name", &p));
	{
		char want[128];

		snprintf(want, sizeof(want), "%s\n",
			 p ? json_object_get_string(p) : "?");
		CHECK(r == 0 && out && strcmp(out, want) == 0);
		CHECK(strcmp(want, "hvt-ag\n") == 0);
	}
	json_object_put(o);
	free(out);
	out = NULL;

	/* Both again when SLAAC added an address between the two reads. */
	for (int i = 0; i < 3; i++) {
		r = hv_agent_info(c, dom, HV_AGENT_ADDRESSES, &out, &e);
		v = virsh_addresses();
		if (i == 2 || (r == 0 && out && v && !strcmp(out, v)))
			break;
		free(out);
		out = NULL;
		free(v);
		sleep_ms(1000);
	}
	CHECK(r == 0 && out && v && strcmp(out, v) == 0);
	CHECK(out && strstr(out, "eth0 10.0.2.15/24\n"));
	printf("# virsh domifaddr --source agent:\n");
	for (char *s = v, *nl; s && (nl = strchr(s, '\n')); s = nl + 1)
		printf("#  %.*s\n", (int)(nl - s), s);
	free(v);
	free(out);
	out = NULL;

	r = hv_agent_info(c, dom, HV_AGENT_INTERFACES, &out, &e);
	o = virsh_agent("{\"execute\":\"guest-network-get-interfaces\"}");
	p = out ? json_tokener_parse(out) : NULL;
	CHECK(r == 0 && o && p && json_object_equal(guest_ifaces_stable(o), guest_ifaces_stable(p)));
	if (!o || !p || !json_object_equal(o, p))
		printf("# hv: %s\n# virsh: %s\n", json_object_to_json_string(p),
		       json_object_to_json_string(o));
	json_object_put(o);
	json_object_put(p);
	free(out);
	out = NULL;

	r = hv_agent_info(c, dom, HV_AGENT_OS, &out, &e);
	o = virsh_agent("{\"execute\":\"guest-get-osinfo\"}");
	p = out ? json_tokener_parse(out) : NULL;
	CHECK(r == 0 && o && p && json_object_equal(o, p));
	json_object_put(o);
	json_object_put(p);
	free(out);
	out = NULL;

	r = hv_agent_info(c, dom, HV_AGENT_TIME, &out, &e);
	CHECK(r == 0 && out && atof(out) > time(NULL) - 120 &&
	      atof(out) < time(NULL) + 120);
	free(out);
	out = NULL;

	r = hv_agent_exec(c, dom, echo, NULL, 0, 10000, &res, &e);
	CHECK(r == 0 && res.exit_code == 0 && res.out_len == 3 &&
	      memcmp(res.out, "hi\n", 3) == 0);
	hv_agent_exec_release(&res);
	r = hv_agent_exec(c, dom, exit3, NULL, 0, 10000, &res, &e);
	CHECK(r == 0 && res.exit_code == 3);
	hv_agent_exec_release(&res);

	r = hv_agent_fsfreeze(c, dom, true, &n, &e);
	printf("# fsfreeze: %d (%d file systems) %s\n", r, n, r ? e : "");
	CHECK(r == 0 && n >= 0);
	r = hv_agent_fsfreeze(c, dom, false, &n, &e);
	printf("# fsthaw: %d (%d file systems) %s\n", r, n, r ? e : "");
	CHECK(r == 0 && n >= 0);
	o = virsh_agent("{\"execute\":\"guest-fsfreeze-status\"}");
	CHECK(o && strcmp(json_object_get_string(o), "thawed") == 0);
	json_object_put(o);

	/* The agent stops inside the guest. */
	r = hv_agent_exec(c, dom, kill_agent, NULL, 0, 10000, &res, &e);
	CHECK(r == 0);
	hv_agent_exec_release(&res);
	CHECK(guest_wait_agent_event("disconnected", 15000));
	r = hv_agent_state(c, dom, &connected, &e);
	CHECK(r == 0 && !connected);
	t0 = now_ms();
	r = hv_agent_info(c, dom, HV_AGENT_HOSTNAME, &out, &e);
	CHECK(r == -ENODATA && now_ms() - t0 < 2000);
	printf("# the stopped agent: %d after %lld ms: %s\n", r,
	       (long long)(now_ms() - t0), e ? e : "");
	CHECK(virsh_agent("{\"execute\":\"guest-ping\"}") == NULL);
	t0 = now_ms();
	r = hv_state(c, dom, &st, &e);
	CHECK(r == 0 && st == HV_STATE_RUNNING && now_ms() - t0 < 2000);

	/* Started again on the console. */
	type_line("qemu-ga -m virtio-serial -p "
		  "/dev/virtio-ports/org.qemu.guest_agent.0 -t /run "
		  "</dev/null >/dev/null 2>&1 &");
	CHECK(guest_wait_agent_event("connected", 20000));
	r = hv_agent_state(c, dom, &connected, &e);
	CHECK(r == 0 && connected);
	r = hv_agent_info(c, dom, HV_AGENT_HOSTNAME, &out, &e);
	CHECK(r == 0 && out && strcmp(out, "hvt-ag\n") == 0);
	free(out);
	out = NULL;
	free(e);
}

int main(void)
{
	char vmlinux[512], initrd[512], cmdline[256], uri[320], *qemu = NULL;
	const char *dir = getenv("HVFS_TEST_LIBVIRTD");
	struct hv_options opts = { .timeout_ms = 5000 };
	struct hv_conn *c = NULL;
	char *e = NULL;
	bool connected = false;
	int64_t t0;
	FILE *f;

	if (!dir) {
		fprintf(stderr, "no private libvirtd: run me as "
				"`tests/libvirtd.sh run test-libvirt-agent`\n");
		return 1;
	}
	snprintf(uri, sizeof(uri), "qemu+unix:///system?socket=%s/run/"
		 "libvirt-sock", dir);
	setenv("HVT_URI", uri, 1);
	guest_files(vmlinux, initrd, sizeof(vmlinux));
	snprintf(dom, sizeof(dom), "hvt-ag-%d", (int)getpid());
	/* The guest's hostname is fixed: a short name for the check. */
	guest_cmdline("hvt-ag", cmdline, sizeof(cmdline));
	snprintf(xml_path, sizeof(xml_path), "/tmp/%s.xml", dom);
	atexit(cleanup);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	sh(&qemu, "command -v qemu-system-x86_64");
	REQUIRE(qemu && *qemu);
	f = fopen(xml_path, "w");
	REQUIRE(f);
	fprintf(f, "<domain type='qemu'><name>%s</name>"
		"<memory unit='MiB'>256</memory><vcpu>1</vcpu>"
		"<os><type arch='x86_64' machine='pc'>hvm</type>"
		"<kernel>%s</kernel><initrd>%s</initrd>"
		"<cmdline>%s</cmdline></os><features><acpi/></features>"
		"<on_poweroff>destroy</on_poweroff><devices>"
		"<emulator>%s</emulator>"
		"<serial type='pty'><target port='0'/></serial>"
		"<console type='pty'><target type='serial' port='0'/></console>"
		"<channel type='unix'><target type='virtio' "
		"name='org.qemu.guest_agent.0'/></channel>"
		"<interface type='user'><model type='virtio'/></interface>"
		"</devices></domain>\n", dom, vmlinux, initrd, cmdline, qemu);
	fclose(f);
	free(qemu);
	REQUIRE(sh(NULL, "virsh -q -c \"$HVT_URI\" define %s >/dev/null",
		   xml_path) == 0);

	REQUIRE(hv_open(uri, &opts, &c, &e) == 0);
	REQUIRE(hv_subscribe(c, guest_on_event, dom) == 0);
	/* Not running: no agent. */
	CHECK(hv_agent_info(c, dom, HV_AGENT_HOSTNAME, &e, &e) == -ENODATA);

	t0 = now_ms();
	REQUIRE(sh(NULL, "virsh -q -c \"$HVT_URI\" start %s >/dev/null",
		   dom) == 0);
	console_open();
	CHECK(guest_wait_agent_event("connected", 90000));
	printf("# agent connected %lld ms after start (TCG)\n",
	       (long long)(now_ms() - t0));
	CHECK(hv_agent_state(c, dom, &connected, &e) == 0 && connected);
	checks(c);
	hv_close(c);
	free(e);
	return check_finish("test-libvirt-agent");
}
