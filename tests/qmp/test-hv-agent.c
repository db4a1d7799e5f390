/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The guest agent through the QMP driver (hv_agent_*), against the real
 * tiny guest (tests/guest) booted once under TCG in a qmp-dir, with a raw
 * agent conversation on NAME.qga as the oracle (before hvfs holds the
 * socket: a chardev socket serves one client at a time). Then the agent is
 * killed inside the guest through its serial console: the state turns
 * disconnected (VSERPORT_CHANGE), calls fail within the deadline and then
 * at once, QMP calls stay fast; started again, it is found again.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <json-c/json.h>

#include "hv.h"
#include "testutil.h"
#include "../guest/guest.h"

#define NAME "agentg"
#define TIMEOUT_MS 3000

static char dir[256], qmp_path[300], qga_path[300], serial_path[300],
	log_path[300];

/* ---- helpers ---- */

static char *slurp_file(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t len = 0;
	FILE *m;
	int c;

	if (!f)
		return strdup("");
	m = open_memstream(&buf, &len);
	while ((c = fgetc(f)) != EOF)
		fputc(c, m);
	fclose(m);
	fclose(f);
	return buf;
}

static int count_ready(void)
{
	char *t = slurp_file(log_path);
	int n = 0;

	for (char *p = t; (p = strstr(p, GUEST_READY)); p++)
		n++;
	free(t);
	return n;
}

static int unix_connect(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	REQUIRE(fd >= 0);
	REQUIRE(connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0);
	return fd;
}

/* Types a line on the serial console. */
static void type_line(const char *line)
{
	int fd = unix_connect(serial_path);

	REQUIRE(write(fd, line, strlen(line)) == (ssize_t)strlen(line));
	REQUIRE(write(fd, "\n", 1) == 1);
	test_sleep_ms(300);
	close(fd);
}

/* Reads one line (up to 1 MiB) within 10 s; malloc'd. */
static char *read_line(int fd)
{
	size_t cap = 1 << 20, len = 0;
	char *buf = malloc(cap);
	int64_t end = test_now_ms() + 10000;

	REQUIRE(buf);
	while (len < cap - 1) {
		struct pollfd p = { .fd = fd, .events = POLLIN };

		REQUIRE(poll(&p, 1, (int)(end - test_now_ms())) == 1);
		REQUIRE(read(fd, buf + len, 1) == 1);
		if (buf[len] == '\n')
			break;
		len++;
	}
	buf[len] = '\0';
	return buf;
}

/* The oracle: one command over a raw connection after a guest-sync;
 * returns its "return" (a reference). */
static json_object *raw_agent(int fd, const char *cmd)
{
	char sync[96], *line;
	json_object *o, *v = NULL;

	snprintf(sync, sizeof(sync), "{\"execute\":\"guest-sync\","
		 "\"arguments\":{\"id\":%d}}\n", 4242);
	REQUIRE(write(fd, sync, strlen(sync)) == (ssize_t)strlen(sync));
	for (;;) {
		line = read_line(fd);
		o = json_tokener_parse(line);
		free(line);
		if (o && json_object_object_get_ex(o, "return", &v) &&
		    json_object_get_int(v) == 4242) {
			json_object_put(o);
			break;
		}
		json_object_put(o);
	}
	REQUIRE(write(fd, cmd, strlen(cmd)) == (ssize_t)strlen(cmd));
	REQUIRE(write(fd, "\n", 1) == 1);
	line = read_line(fd);
	o = json_tokener_parse(line);
	free(line);
	REQUIRE(o && json_object_object_get_ex(o, "return", &v));
	json_object_get(v);
	json_object_put(o);
	return v;
}

/* ---- checks ---- */

struct slow_call {
	struct hv_conn *c;
	int r;
	int64_t ms;
};

static void *agent_call_thread(void *arg)
{
	struct slow_call *s = arg;
	char *out = NULL;
	int64_t t0 = test_now_ms();

	s->r = hv_agent_info(s->c, NAME, HV_AGENT_HOSTNAME, &out, NULL);
	s->ms = test_now_ms() - t0;
	free(out);
	return NULL;
}

static void check_exec(struct hv_conn *c)
{
	struct hv_agent_exec_result res = { 0 };
	const char *echo[] = { "echo", "hi", NULL };
	const char *exit3[] = { "sh", "-c", "exit 3", NULL };
	const char *err[] = { "sh", "-c", "echo oops >&2; exit 1", NULL };
	const char *cat[] = { "cat", NULL };
	const char *slow[] = { "sleep", "30", NULL };
	char *e = NULL;
	int r;

	r = hv_agent_exec(c, NAME, echo, NULL, 0, 10000, &res, &e);
	CHECK(r == 0);
	CHECK(res.exit_code == 0 && res.signal == 0);
	CHECK(res.out_len == 3 && memcmp(res.out, "hi\n", 3) == 0);
	CHECK(res.err_len == 0);
	hv_agent_exec_release(&res);

	r = hv_agent_exec(c, NAME, exit3, NULL, 0, 10000, &res, &e);
	CHECK(r == 0 && res.exit_code == 3);
	hv_agent_exec_release(&res);

	r = hv_agent_exec(c, NAME, err, NULL, 0, 10000, &res, &e);
	CHECK(r == 0 && res.exit_code == 1);
	CHECK(res.err_len == 5 && memcmp(res.err, "oops\n", 5) == 0);
	hv_agent_exec_release(&res);

	r = hv_agent_exec(c, NAME, cat, "abc\0def", 7, 10000, &res, &e);
	CHECK(r == 0 && res.out_len == 7 &&
	      memcmp(res.out, "abc\0def", 7) == 0);
	hv_agent_exec_release(&res);

	/* A program that does not end: ETIMEDOUT within its deadline. */
	int64_t t0 = test_now_ms();

	r = hv_agent_exec(c, NAME, slow, NULL, 0, 1500, &res, &e);
	CHECK(r == -ETIMEDOUT);
	CHECK(test_now_ms() - t0 < 1500 + TIMEOUT_MS);
	free(e);
	e = NULL;

	/* A program that does not exist: the agent's error, not a hang. */
	const char *none[] = { "/no/such/program", NULL };

	r = hv_agent_exec(c, NAME, none, NULL, 0, 10000, &res, &e);
	CHECK(r < 0 && r != -ETIMEDOUT && e && *e);
	printf("# no such program: %d %s\n", r, e ? e : "");
	free(e);
}

static void check_fsfreeze(struct hv_conn *c)
{
	char *reply = NULL, *e = NULL;
	int n = -1, r;

	r = hv_agent_fsfreeze(c, NAME, true, &n, &e);
	CHECK(r == 0 && n >= 0);
	r = hv_agent_command(c, NAME, "{\"execute\":\"guest-fsfreeze-status\"}",
			     0, &reply, &e);
	printf("# froze %d file systems; status %s\n", n, reply ? reply : "-");
	/* The agent says frozen only when it froze something (the guest's
	 * initramfs has nothing to freeze). */
	CHECK(r == 0 && reply &&
	      strstr(reply, n > 0 ? "\"frozen\"" : "\"thawed\""));
	free(reply);
	r = hv_agent_fsfreeze(c, NAME, false, &n, &e);
	CHECK(r == 0 && n >= 0);
	r = hv_agent_command(c, NAME, "{\"execute\":\"guest-fsfreeze-status\"}",
			     0, &reply, &e);
	CHECK(r == 0 && reply && strstr(reply, "\"thawed\""));
	free(reply);
	free(e);
}

int main(void)
{
	char vmlinux[512], initrd[512], append[256], serial_opt[700],
		qga_opt[700];
	json_object *o_host, *o_ifaces, *o_os, *parsed = NULL;
	struct hv_options opts = { .timeout_ms = TIMEOUT_MS };
	struct hv_conn *c = NULL;
	char uri[300], *out = NULL, *e = NULL, *reply = NULL;
	int64_t t0, boot_ms;
	bool connected = false;
	enum hv_state st;
	pid_t pid;
	int fd, r;

	snprintf(dir, sizeof(dir), "%s", test_init("hv-agent"));
	test_require_qemu();
	guest_files(vmlinux, initrd, sizeof(vmlinux));
	guest_cmdline(NAME, append, sizeof(append));
	snprintf(qmp_path, sizeof(qmp_path), "%s/" NAME ".qmp", dir);
	snprintf(qga_path, sizeof(qga_path), "%s/" NAME ".qga", dir);
	snprintf(serial_path, sizeof(serial_path), "%s/" NAME ".serial", dir);
	snprintf(log_path, sizeof(log_path), "%s/" NAME ".log", dir);
	snprintf(serial_opt, sizeof(serial_opt), "socket,id=ser0,path=%s,"
		 "server=on,wait=off,logfile=%s", serial_path, log_path);
	snprintf(qga_opt, sizeof(qga_opt), "socket,id=qga0,path=%s,"
		 "server=on,wait=off", qga_path);
	const char *args[] = {
		"-accel", "tcg", "-m", "256", "-display", "none",
		"-name", NAME, "-kernel", vmlinux, "-initrd", initrd,
		"-append", append, "-chardev", serial_opt,
		"-serial", "chardev:ser0",
		"-netdev", "user,id=net0",
		"-device", "virtio-net-pci,netdev=net0",
		"-device", "virtio-serial-pci", "-chardev", qga_opt,
		"-device", "virtserialport,chardev=qga0,id=qgaport,"
			   "name=org.qemu.guest_agent.0",
		NULL };

	t0 = test_now_ms();
	pid = qemu_start_args(qmp_path, args);
	while (count_ready() < 1 && test_now_ms() - t0 < 90000)
		test_sleep_ms(100);
	boot_ms = test_now_ms() - t0;
	REQUIRE(count_ready() >= 1);
	printf("# guest ready in %lld ms (TCG)\n", (long long)boot_ms);

	/* The oracle, before hvfs holds the agent socket. */
	fd = unix_connect(qga_path);
	o_host = raw_agent(fd, "{\"execute\":\"guest-get-host-name\"}");
	o_ifaces = raw_agent(fd,
			     "{\"execute\":\"guest-network-get-interfaces\"}");
	o_os = raw_agent(fd, "{\"execute\":\"guest-get-osinfo\"}");
	close(fd);

	snprintf(uri, sizeof(uri), "qmp-dir:%s", dir);
	REQUIRE(hv_open(uri, &opts, &c, &e) == 0);
	REQUIRE(hv_subscribe(c, guest_on_event, NAME) == 0);

	/* state */
	r = hv_agent_state(c, NAME, &connected, &e);
	CHECK(r == 0 && connected);

	/* passthrough */
	r = hv_agent_command(c, NAME, "{\"execute\":\"guest-ping\"}", 0, &reply,
			     &e);
	CHECK(r == 0 && STREQ(reply, "{\"return\":{}}"));
	free(reply);
	r = hv_agent_command(c, NAME, "{\"execute\":\"no-such-command\"}", 0,
			     &reply, &e);
	CHECK(r == 0 && reply && strstr(reply, "\"error\""));
	free(reply);
	r = hv_agent_command(c, NAME, "{\"execute\":\"guest-ping\"}\n{", 0,
			     &reply, &e);
	CHECK(r == -EINVAL);

	/* info, against the oracle */
	r = hv_agent_info(c, NAME, HV_AGENT_HOSTNAME, &out, &e);
	CHECK(r == 0 && STREQ(out, NAME "\n"));
	json_object *hn = NULL;

	json_object_object_get_ex(o_host, "host-name", &hn);
	CHECK(STREQ(json_object_get_string(hn), NAME));
	free(out);

	r = hv_agent_info(c, NAME, HV_AGENT_INTERFACES, &out, &e);
	CHECK(r == 0 && out && (parsed = json_tokener_parse(out)) &&
	      json_object_equal(guest_ifaces_stable(parsed), guest_ifaces_stable(o_ifaces)));
	json_object_put(parsed);
	free(out);

	r = hv_agent_info(c, NAME, HV_AGENT_ADDRESSES, &out, &e);
	CHECK(r == 0 && out && strstr(out, "eth0 10.0.2.15/24\n") &&
	      strstr(out, "lo 127.0.0.1/8\n"));
	for (char *p = out, *nl; p && *p; p = nl + 1) {
		nl = strchr(p, '\n');
		if (!nl)
			break;
		printf("# address: %.*s\n", (int)(nl - p), p);
	}
	free(out);

	r = hv_agent_info(c, NAME, HV_AGENT_OS, &out, &e);
	CHECK(r == 0 && out && (parsed = json_tokener_parse(out)) &&
	      json_object_equal(parsed, o_os));
	json_object_put(parsed);
	free(out);

	r = hv_agent_info(c, NAME, HV_AGENT_USERS, &out, &e);
	CHECK(r == 0 && out && out[0] == '[');
	free(out);
	out = NULL;

	r = hv_agent_info(c, NAME, HV_AGENT_FILESYSTEMS, &out, &e);
	printf("# filesystems: %d %s", r, r == 0 ? out : e);
	CHECK(r == 0 || r == -EIO);
	free(out);
	out = NULL;

	r = hv_agent_info(c, NAME, HV_AGENT_TIME, &out, &e);
	CHECK(r == 0 && out);
	if (out) {
		double guest = atof(out);

		CHECK(guest > time(NULL) - 120 && guest < time(NULL) + 120);
	}
	free(out);

	check_exec(c);
	check_fsfreeze(c);

	/* The agent stops inside the guest: the port closes. */
	type_line("killall qemu-ga");
	CHECK(guest_wait_agent_event("disconnected", 10000));
	r = hv_agent_state(c, NAME, &connected, &e);
	CHECK(r == 0 && !connected);
	{
		struct slow_call s = { .c = c };
		pthread_t t;
		int64_t q0;

		pthread_create(&t, NULL, agent_call_thread, &s);
		test_sleep_ms(200);
		q0 = test_now_ms();
		r = hv_state(c, NAME, &st, &e); /* the monitor is unaffected */
		CHECK(r == 0 && st == HV_STATE_RUNNING);
		CHECK(test_now_ms() - q0 < 1000);
		pthread_join(t, NULL);
		CHECK(s.r == -ETIMEDOUT);
		CHECK(s.ms >= TIMEOUT_MS - 100 && s.ms < TIMEOUT_MS + 2000);
		printf("# a call to the stopped agent: %d after %lld ms\n", s.r,
		       (long long)s.ms);
		/* Known unresponsive: at once. */
		s.ms = 0;
		agent_call_thread(&s);
		CHECK(s.r == -ETIMEDOUT && s.ms < 500);
		printf("# the next: %d after %lld ms\n", s.r, (long long)s.ms);
	}

	/* Started again: the port opens, the agent is used again. */
	type_line("qemu-ga -m virtio-serial -p "
		  "/dev/virtio-ports/org.qemu.guest_agent.0 -t /run "
		  "</dev/null >/dev/null 2>&1 &");
	CHECK(guest_wait_agent_event("connected", 15000));
	r = hv_agent_info(c, NAME, HV_AGENT_HOSTNAME, &out, &e);
	CHECK(r == 0 && STREQ(out, NAME "\n"));
	free(out);
	r = hv_agent_state(c, NAME, &connected, &e);
	CHECK(r == 0 && connected);

	/* A domain without an agent socket: ENODATA, fast. */
	unlink(qga_path);
	hv_close(c);
	REQUIRE(hv_open(uri, &opts, &c, &e) == 0);
	t0 = test_now_ms();
	r = hv_agent_info(c, NAME, HV_AGENT_HOSTNAME, &out, &e);
	CHECK(r == -ENODATA && test_now_ms() - t0 < 1000);
	r = hv_agent_state(c, NAME, &connected, &e);
	CHECK(r == -ENODATA);

	hv_close(c);
	json_object_put(o_host);
	json_object_put(o_ifaces);
	json_object_put(o_os);
	free(e);
	qemu_kill(pid);
	return check_finish("test-hv-agent");
}
