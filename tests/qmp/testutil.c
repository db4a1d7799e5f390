/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#define MAX_QEMUS 16


/* Touched by the exit paths; the tests start QEMUs from the main thread. */
static char tmpdir[64];
static volatile pid_t qemus[MAX_QEMUS];

static void kill_all(void)
{
	for (int i = 0; i < MAX_QEMUS; i++) {
		if (qemus[i] > 0) {
			kill(qemus[i], SIGKILL);
			waitpid(qemus[i], NULL, 0);
			qemus[i] = 0;
		}
	}
}

static void remove_tmpdir(void)
{
	DIR *d;
	struct dirent *de;

	if (!tmpdir[0] || !(d = opendir(tmpdir)))
		return;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			unlinkat(dirfd(d), de->d_name, 0);
	closedir(d);
	rmdir(tmpdir);
}

static void at_exit(void)
{
	kill_all();
	remove_tmpdir();
}

static void on_signal(int sig)
{
	/* Only async-signal-safe calls: kill, no reaping needed. */
	for (int i = 0; i < MAX_QEMUS; i++)
		if (qemus[i] > 0)
			kill(qemus[i], SIGKILL);
	signal(sig, SIG_DFL);
	raise(sig);
}

const char *test_init(const char *name)
{
	struct sigaction sa = { .sa_handler = on_signal };

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/hvfs-%s-XXXXXX", name);
	REQUIRE(mkdtemp(tmpdir) != NULL);
	atexit(at_exit);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGALRM, &sa, NULL);
	/* A hang anywhere must end as a failure, not a stuck test. */
	alarm(120);
	return tmpdir;
}

int64_t test_now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

void test_sleep_ms(int ms)
{
	struct timespec t = { ms / 1000, (long)(ms % 1000) * 1000000 };

	while (nanosleep(&t, &t) < 0 && errno == EINTR)
		;
}

void test_require_qemu(void)
{
	if (system("command -v qemu-system-x86_64 >/dev/null 2>&1") != 0) {
		fprintf(stderr, "qemu-system-x86_64 not found: skipped\n");
		exit(77);
	}
}

bool wait_listening(const char *path, int ms)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int64_t end = test_now_ms() + ms;
	int fd, r;

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	do {
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		r = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
		close(fd);
		if (r == 0)
			return true;
		test_sleep_ms(20);
	} while (test_now_ms() < end);
	return false;
}

bool qemu_binary_version(int *major, int *minor, int *micro)
{
	FILE *f = popen("qemu-system-x86_64 --version", "r");
	char line[256];
	bool ok;

	if (!f)
		return false;
	ok = fgets(line, sizeof(line), f) &&
	     sscanf(line, "QEMU emulator version %d.%d.%d", major, minor,
		    micro) == 3;
	pclose(f);
	return ok;
}

/* Forks and execs argv as a QEMU the cleanup kills; waits until wait_path
 * accepts. */
static pid_t spawn(const char *const *argv, const char *wait_path)
{
	int slot = -1;
	pid_t pid;

	for (int i = 0; i < MAX_QEMUS; i++)
		if (qemus[i] == 0)
			slot = i;
	REQUIRE(slot >= 0);

	pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(null, 0);
		dup2(null, 1);
		execvp(argv[0], (char **)argv);
		_exit(127);
	}
	qemus[slot] = pid;
	REQUIRE(wait_listening(wait_path, 10000));
	return pid;
}

pid_t qemu_start(const char *const *qmp_paths)
{
	const char *argv[32] = { "qemu-system-x86_64", "-machine", "none",
				 "-nodefaults", "-display", "none" };
	char opts[4][200];
	int argc = 6;

	for (int i = 0; i < 4 && qmp_paths[i]; i++) {
		snprintf(opts[i], sizeof(opts[i]),
			 "unix:%s,server=on,wait=off", qmp_paths[i]);
		argv[argc++] = "-qmp";
		argv[argc++] = opts[i];
	}
	argv[argc] = NULL;
	return spawn(argv, qmp_paths[0]);
}

pid_t qemu_start_args(const char *qmp_path, const char *const *args)
{
	const char *argv[64] = { "qemu-system-x86_64" };
	char opt[200];
	int argc = 1;

	for (int i = 0; args[i]; i++) {
		REQUIRE(argc < 60);
		argv[argc++] = args[i];
	}
	snprintf(opt, sizeof(opt), "unix:%s,server=on,wait=off", qmp_path);
	argv[argc++] = "-qmp";
	argv[argc++] = opt;
	argv[argc] = NULL;
	return spawn(argv, qmp_path);
}

void qemu_kill(pid_t pid)
{
	if (pid <= 0)
		return;
	for (int i = 0; i < MAX_QEMUS; i++)
		if (qemus[i] == pid)
			qemus[i] = 0;
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

bool qemu_wait_exit(pid_t pid, int ms)
{
	int64_t end = test_now_ms() + ms;

	do {
		if (waitpid(pid, NULL, WNOHANG) == pid) {
			for (int i = 0; i < MAX_QEMUS; i++)
				if (qemus[i] == pid)
					qemus[i] = 0;
			return true;
		}
		test_sleep_ms(20);
	} while (test_now_ms() < end);
	return false;
}

int seen_lost(struct seen *s)
{
	int n;

	pthread_mutex_lock(&s->lock);
	n = s->lost;
	pthread_mutex_unlock(&s->lock);
	return n;
}

void seen_on_event(void *userdata, const char *event, const char *data,
		   int64_t seconds, int64_t micros)
{
	struct seen *s = userdata;

	pthread_mutex_lock(&s->lock);
	if (!event)
		s->lost++;
	else if (strlen(s->names) + strlen(event) + 2 < sizeof(s->names)) {
		strcat(s->names, event);
		strcat(s->names, " ");
	}
	pthread_mutex_unlock(&s->lock);
}
