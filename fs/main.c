/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * hvfs: QEMU/KVM virtual machines as a file system.
 *
 * main() parses the options, opens the sources, mounts, and runs a
 * multi-threaded FUSE loop built by hand: Debian's libfuse 3.14 ignores
 * max_threads in fuse_main().
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "console.h"
#include "events.h"
#include "hvfs.h"
#include "mount.h"
#include "ops.h"
#include "source.h"
#include "stats.h"
#include "tree.h"

struct hvfs_options hvfs_opts = { .timeout_ms = 5000 };

/* What the domain table tells the events and console files. */
static void publish(struct source *src, struct dom *d, const char *name,
		    const struct hv_event *ev)
{
	events_publish(src, d, name, ev);
	console_event(d, ev);
}

static void domain_end(uint64_t slot)
{
	events_end_domain(slot);
	console_end_domain(slot);
}

static const struct tree_listener events_listener = {
	.event = publish,
	.domain_end = domain_end,
};

static size_t n_source_args;
static char *mountpoint_abs; /* the canonical MOUNTPOINT */
static char *fsname;         /* the -ofsname=... handed to FUSE */
static char *first_uri; /* names the mount when it is the only source */

static void usage(FILE *f)
{
	fprintf(f,
"usage: hvfs [OPTIONS] [SOURCE] MOUNTPOINT\n"
"\n"
"Shows the virtual machines of a QEMU/KVM host as directories.\n"
"\n"
"Sources (any number; with none, qemu:///system, or for users other than\n"
"root their own qemu:///session):\n"
"  SOURCE                 a libvirt URI or qmp-dir:DIR\n"
"  -c, --connect [NAME=]URI\n"
"                         a libvirt connection: qemu:///system,\n"
"                         qemu+unix:///system?socket=PATH, qemu:///session,\n"
"                         test+unix:///default,\n"
"                         qemu+tcp://HOST[:PORT]/system,\n"
"                         qemu+ssh://[USER@]HOST[:PORT]/system,\n"
"                         qemu+tls://HOST[:PORT]/system; with several, the root\n"
"                         holds one directory per host: NAME, else the URI's\n"
"                         host, else this machine's name\n"
"      --qmp-dir DIR      every QMP socket DIR/NAME.qmp is the domain NAME\n"
"      --qmp NAME=ADDR    one QMP monitor, ADDR unix:PATH or tcp:HOST:PORT\n"
"\n"
"Options:\n"
"  -o OPT[,OPT...]        timeout=SECONDS (deadline of every call, default 5),\n"
"                         ctlgroup=GROUP (that group may use what root may:\n"
"                         control, memory, qmp, query/, screen.png),\n"
"                         allow_other (also turns on default_permissions),\n"
"                         nonempty (mount over files or a mount),\n"
"                         kernel_cache (the kernel keeps state and version\n"
"                         of sources with events: an open file keeps the\n"
"                         value it was opened with),\n"
"                         logfile=PATH (the background daemon's log),\n"
"                         and any FUSE mount option; fstab's own (_netdev,\n"
"                         nofail, noauto, user, x-*, ...) are ignored\n"
"  -f                     stay in the foreground, log to stderr\n"
"  -d                     debug output (implies -f)\n"
"  -h, --help             this text\n"
"  -V, --version          the version\n");
}

/*
 * path made absolute, so that it means the same after detach()'s chdir("/"):
 * resolved when it exists, else joined to the working directory (a socket
 * may not exist yet). malloc'd; NULL on ENOMEM.
 */
static char *absolute(const char *path, size_t len)
{
	char *p = strndup(path, len), *r = NULL, cwd[PATH_MAX];

	if (!p || p[0] == '/')
		return p;
	r = realpath(p, NULL);
	if (!r && getcwd(cwd, sizeof(cwd)) && asprintf(&r, "%s/%s", cwd, p) < 0)
		r = NULL;
	free(p);
	return r;
}

/*
 * uri with every local path in it absolute: qmp-dir:DIR, qmp:NAME=unix:PATH
 * and a libvirt URI's socket=PATH. malloc'd; NULL on ENOMEM.
 */
static char *absolute_uri(const char *uri)
{
	const char *at = NULL, *end, *eq;
	char *abs, *r;
	bool in_query = false;

	if (strncmp(uri, "qmp-dir:", 8) == 0) {
		at = uri + 8;
	} else if (strncmp(uri, "qmp:", 4) == 0) {
		eq = strchr(uri, '=');
		if (eq && strncmp(eq + 1, "unix:", 5) == 0)
			at = eq + 6;
	} else if ((at = strstr(uri, "?socket=")) ||
		   (at = strstr(uri, "&socket="))) {
		at += 8;
		in_query = true;
	}
	if (!at || *at == '/' || !*at)
		return strdup(uri);
	end = at + strcspn(at, in_query ? "&" : "");
	abs = absolute(at, end - at);
	if (!abs || asprintf(&r, "%.*s%s%s", (int)(at - uri), uri, abs,
			     end) < 0)
		r = NULL;
	free(abs);
	return r;
}

static int add_source(const char *arg, bool may_be_named)
{
	const char *eq = strchr(arg, '='), *colon = strchr(arg, ':');
	char *label = NULL;
	const char *uri = arg;
	char *abs_uri = NULL;
	int r;

	/* NAME=URI: a name has no ':' (a URI's query may hold '='). */
	if (may_be_named && eq && (!colon || eq < colon)) {
		label = strndup(arg, eq - arg);
		uri = eq + 1;
		if (!label)
			return -ENOMEM;
		if (!*label || strchr(label, '/')) {
			fprintf(stderr, "hvfs: bad connection name in %s\n",
				arg);
			free(label);
			return -EINVAL;
		}
	}
	uri = abs_uri = absolute_uri(uri);
	r = uri ? source_add(uri, label) : -ENOMEM;
	free(label);
	if (r == 0 && !n_source_args++ && !(first_uri = strdup(uri)))
		r = -ENOMEM;
	free(abs_uri);
	return r;
}

/*
 * Options that mount(8), mount.fuse3 or an fstab line may hand us and that
 * mean nothing to a FUSE mount: fstab and helper flags, and the atime
 * flavours libfuse does not know (hvfs keeps no atime). They are accepted
 * and dropped; an unknown option still fails the mount (libfuse says which).
 */
static bool ignored_o(const char *opt)
{
	static const char *const names[] = {
		"defaults", "auto",	  "noauto",   "user",
		"nouser",   "users",	  "owner",    "group",
		"_netdev",  "nofail",	  "relatime", "strictatime",
		"diratime", "nodiratime", "lazytime", "nolazytime",
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(opt, names[i]) == 0)
			return true;
	return strncmp(opt, "x-", 2) == 0 || strncmp(opt, "comment=", 8) == 0;
}

/* Takes our own -o options out of `opts`; the rest goes to FUSE. */
static int parse_o(const char *opts, struct fuse_args *fargs)
{
	char *copy = strdup(opts), *save = NULL, *tok;
	int r = 0;

	if (!copy)
		return -ENOMEM;
	for (tok = strtok_r(copy, ",", &save); tok && !r;
	     tok = strtok_r(NULL, ",", &save)) {
		if (strncmp(tok, "timeout=", 8) == 0) {
			char *end;
			double s = strtod(tok + 8, &end);

			if (*end || end == tok + 8 || s <= 0 || s > 3600) {
				fprintf(stderr, "hvfs: bad %s\n", tok);
				r = -EINVAL;
			}
			hvfs_opts.timeout_ms = (int)(s * 1000);
		} else if (strncmp(tok, "ctlgroup=", 9) == 0) {
			struct group *g = getgrnam(tok + 9);

			if (!g) {
				fprintf(stderr, "hvfs: no group %s\n", tok + 9);
				r = -EINVAL;
			} else {
				hvfs_opts.ctlgroup = g->gr_gid;
				hvfs_opts.have_ctlgroup = true;
			}
		} else if (strcmp(tok, "nonempty") == 0) {
			hvfs_opts.nonempty = true;
		} else if (strcmp(tok, "kernel_cache") == 0) {
			hvfs_opts.kernel_cache = true;
		} else if (strncmp(tok, "logfile=", 8) == 0) {
			if (tok[8] != '/') {
				fprintf(stderr, "hvfs: %s: needs an absolute "
					"path\n", tok);
				r = -EINVAL;
			} else {
				free((char *)hvfs_opts.logfile);
				hvfs_opts.logfile = strdup(tok + 8);
				if (!hvfs_opts.logfile)
					r = -ENOMEM;
			}
		} else if (!ignored_o(tok)) {
			if (strcmp(tok, "allow_other") == 0)
				hvfs_opts.allow_other = true;
			if (fuse_opt_add_arg(fargs, "-o") < 0 ||
			    fuse_opt_add_arg(fargs, tok) < 0)
				r = -ENOMEM;
		}
	}
	free(copy);
	return r;
}

/*
 * Refuses a mountpoint with something in it, or that is a mount itself, so
 * that nothing is hidden by mistake: unless -o nonempty.
 */
static int check_mountpoint(const char *path)
{
	struct statx stx;
	struct dirent *de;
	bool empty = true;
	DIR *dir;

	if (hvfs_opts.nonempty)
		return 0;
	if (statx(AT_FDCWD, path, 0, STATX_BASIC_STATS, &stx) < 0) {
		fprintf(stderr, "hvfs: %s: %s\n", path, strerror(errno));
		return -errno;
	}
	if ((stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) &&
	    (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT)) {
		fprintf(stderr, "hvfs: %s is a mount point already; give "
			"-o nonempty to mount over it\n", path);
		return -EBUSY;
	}
	dir = opendir(path);
	if (!dir) /* not a directory: FUSE says why */
		return 0;
	while (empty && (de = readdir(dir)))
		empty = strcmp(de->d_name, ".") == 0 ||
			strcmp(de->d_name, "..") == 0;
	closedir(dir);
	if (!empty) {
		fprintf(stderr, "hvfs: %s is not empty; give -o nonempty to "
			"mount over it\n", path);
		return -ENOTEMPTY;
	}
	return 0;
}

/*
 * Where a background daemon logs: -o logfile=PATH; else syslog; and on a
 * host without syslog (no /dev/log), DIR/NAME.log, NAME being the
 * mountpoint's path with '/' as '-' (/mnt/hv: mnt-hv.log), DIR /run/hvfs,
 * or for a user other than root $XDG_RUNTIME_DIR/hvfs when it is set (the
 * user cannot write to /run/hvfs). Said on stderr before detaching when
 * nothing can be kept.
 */
static int open_log(const char *mountpoint)
{
	const char *rt = getenv("XDG_RUNTIME_DIR");
	struct stat st;
	char *path = NULL, *dir = NULL;
	int r;

	if (hvfs_opts.foreground)
		return 0;
	if (hvfs_opts.logfile) {
		r = hvfs_log_file(hvfs_opts.logfile);
		if (r < 0)
			fprintf(stderr, "hvfs: logfile %s: %s\n",
				hvfs_opts.logfile, strerror(-r));
		return r;
	}
	if (stat("/dev/log", &st) == 0 && S_ISSOCK(st.st_mode))
		return 0;
	while (*mountpoint == '/')
		mountpoint++;
	if (geteuid() != 0 && rt && *rt) {
		if (asprintf(&dir, "%s/hvfs", rt) < 0)
			return -ENOMEM;
	} else {
		dir = strdup(HVFS_LOG_DIR);
		if (!dir)
			return -ENOMEM;
	}
	if (asprintf(&path, "%s/%s.log", dir,
		     *mountpoint ? mountpoint : "root") < 0) {
		free(dir);
		return -ENOMEM;
	}
	for (char *c = path + strlen(dir) + 1; *c; c++)
		if (*c == '/')
			*c = '-';
	if (mkdir(dir, geteuid() != 0 ? 0700 : 0755) < 0 && errno != EEXIST)
		r = -errno;
	else
		r = hvfs_log_file(path);
	if (r < 0)
		fprintf(stderr, "hvfs: no syslog (/dev/log) and %s: %s: "
			"messages are lost (give -o logfile=PATH)\n", path,
			strerror(-r));
	else
		fprintf(stderr, "hvfs: no syslog (/dev/log): logging to %s\n",
			path);
	free(path);
	free(dir);
	return 0;
}

/*
 * Detaches before any thread exists (drivers start threads), and lets the
 * parent exit only when the child reports whether the mount came up.
 */
static int detach(int *ret_fd)
{
	int p[2];
	pid_t pid;
	char status = 1;

	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0) {
		close(p[1]);
		if (read(p[0], &status, 1) != 1)
			status = 1;
		_exit(status);
	}
	close(p[0]);
	setsid();
	*ret_fd = p[1];
	return 0;
}

static void report(int fd, char status)
{
	if (fd < 0)
		return;
	if (write(fd, &status, 1) != 1)
		hvfs_log(LOG_WARNING, "cannot report start-up status");
	close(fd);
}

static void log_lib_debug(const char *msg)
{
	hvfs_log(LOG_DEBUG, "%s", msg);
}

/* Leaves before anything was started: frees what the leak checker would
 * otherwise report (the sources stay reachable from the tree). */
static int early_exit(struct fuse_args *fargs, int status)
{
	fuse_opt_free_args(fargs);
	free((char *)hvfs_opts.logfile);
	free(mountpoint_abs);
	free(fsname);
	free(first_uri);
	return status;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "connect", required_argument, NULL, 'c' },
		{ "qmp-dir", required_argument, NULL, 'Q' },
		{ "qmp", required_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{}
	};
	struct fuse_args fargs = FUSE_ARGS_INIT(0, NULL);
	struct fuse_loop_config *loop = NULL;
	struct fuse_session *se = NULL;
	const char *mountpoint;
	char mount_dev[MOUNT_DEV_MAX] = "";
	int c, r, status_fd = -1, ret = 1;

	if (fuse_opt_add_arg(&fargs, argv[0]) < 0)
		return 1;
	while ((c = getopt_long(argc, argv, "c:o:fdhV", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			r = add_source(argv[optind - 1], true);
			break;
		case 'Q': {
			char *uri;

			r = asprintf(&uri, "qmp-dir:%s", optarg) < 0 ? -ENOMEM
								       : 0;
			if (!r) {
				r = add_source(uri, false);
				free(uri);
			}
			break;
		}
		case 'q': {
			const char *eq = strchr(optarg, '=');
			char *uri;

			/* The syntax is the command line's: a mistake is 2. */
			if (!eq || eq == optarg ||
			    (strncmp(eq + 1, "unix:", 5) != 0 &&
			     strncmp(eq + 1, "tcp:", 4) != 0)) {
				fprintf(stderr, "hvfs: --qmp %s: expected "
					"NAME=unix:PATH or NAME=tcp:HOST:PORT\n",
					optarg);
				return early_exit(&fargs, 2);
			}
			r = asprintf(&uri, "qmp:%s", optarg) < 0 ? -ENOMEM : 0;
			if (!r) {
				r = add_source(uri, false);
				free(uri);
			}
			break;
		}
		case 'o':
			r = parse_o(optarg, &fargs);
			break;
		case 'f':
			hvfs_opts.foreground = true;
			r = 0;
			break;
		case 'd':
			hvfs_opts.foreground = hvfs_opts.debug = true;
			r = fuse_opt_add_arg(&fargs, "-d");
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("hvfs %s (libfuse %s)\n", HVFS_VERSION,
			       fuse_pkgversion());
			return 0;
		default:
			usage(stderr);
			return early_exit(&fargs, 2);
		}
		if (r < 0)
			return early_exit(&fargs, 2);
	}
	if (argc - optind == 2) {
		if (add_source(argv[optind++], false) < 0)
			return early_exit(&fargs, 1);
	}
	if (argc - optind != 1) {
		usage(stderr);
		return early_exit(&fargs, 2);
	}
	/* Canonical: the daemon works from "/", must unmount this path, and
	 * finds its mount by it in /proc/self/mountinfo. */
	mountpoint = mountpoint_abs = realpath(argv[optind], NULL);
	if (!mountpoint) {
		fprintf(stderr, "hvfs: %s: %s\n", argv[optind],
			strerror(errno));
		return early_exit(&fargs, 1);
	}
	/* As virsh: root's default is the system daemon, a user's their own. */
	if (n_source_args == 0 &&
	    add_source(geteuid() == 0 ? "qemu:///system" : "qemu:///session",
		       false) < 0)
		return early_exit(&fargs, 1);

	if (hvfs_opts.allow_other &&
	    fuse_opt_add_arg(&fargs, "-odefault_permissions") < 0)
		return early_exit(&fargs, 1);
	if (asprintf(&fsname, "-ofsname=%s,subtype=hvfs",
		     n_source_args == 1 ? first_uri : "hvfs") < 0 ||
	    fuse_opt_add_arg(&fargs, fsname) < 0)
		return early_exit(&fargs, 1);

	if (check_mountpoint(mountpoint) < 0 || open_log(mountpoint) < 0)
		return early_exit(&fargs, 1);
	if (!hvfs_opts.foreground && detach(&status_fd) < 0) {
		perror("hvfs: fork");
		return 1;
	}
	hvfs_log_init(true, hvfs_opts.debug);
	/*
	 * Up to 128 FUSE workers come and go with the load; glibc would give
	 * them up to 8 malloc arenas a core, each keeping what it freed. Our
	 * allocations are small and short: two arenas keep memory flat.
	 */
	mallopt(M_ARENA_MAX, HVFS_MALLOC_ARENAS);
	if (hvfs_opts.debug)
		hv_set_debug_log(log_lib_debug);

	if (sources_open() < 0)
		goto out;
	se = fuse_session_new(&fargs, &hvfs_ops, sizeof(hvfs_ops), NULL);
	if (!se)
		goto out;
	/* Subscribes and fills the caches before the mount appears, so the
	 * first reads are as fast as later ones. */
	tree_set_listener(&events_listener);
	if (tree_start(se) < 0)
		goto out;
	if (fuse_set_signal_handlers(se) < 0)
		goto out;
	if (fuse_session_mount(se, mountpoint) < 0)
		goto out_signals;
	if (mount_identify(mountpoint, mount_dev) < 0 ||
	    mount_watch(se, mount_dev) < 0)
		hvfs_log(LOG_WARNING, "cannot tell our mount from others: a "
			 "copy in another namespace keeps the daemon running");

	if (!hvfs_opts.foreground) {
		report(status_fd, 0);
		status_fd = -1;
		hvfs_log_init(false, hvfs_opts.debug);
		if (chdir("/") < 0 || !freopen("/dev/null", "r", stdin) ||
		    !freopen("/dev/null", "w", stdout) ||
		    !freopen("/dev/null", "w", stderr))
			hvfs_log(LOG_WARNING, "cannot detach stdio");
	}
	hvfs_log(LOG_INFO, "mounted on %s", mountpoint);

	loop = fuse_loop_cfg_create();
	if (!loop)
		goto out_unmount;
	fuse_loop_cfg_set_max_threads(loop, HVFS_MAX_THREADS);
	fuse_loop_cfg_set_idle_threads(loop, 8);
	/* One /dev/fuse descriptor for all workers: with clone_fd, libfuse
	 * answers an interrupt that came before its read was dispatched
	 * (EAGAIN: "send it again") on the descriptor that read the
	 * interrupt, where the kernel cannot find the read; the interrupt
	 * is lost and the reader, parked, waits forever (design.md). */
	fuse_loop_cfg_set_clone_fd(loop, 0);
	ret = fuse_session_loop_mt(se, loop) < 0 ? 1 : 0;
	fuse_loop_cfg_destroy(loop);

out_unmount:
	mount_unwatch();
	/* Only our own mount: another may have taken the path since ours was
	 * unmounted here (while a copy elsewhere kept it alive). */
	if (!mount_connected(se)) {
		/* Unmounted already: libfuse only frees its state. */
	} else if (!mount_dev[0] || mount_is_ours(mountpoint, mount_dev)) {
		hvfs_log(LOG_INFO, "unmounting %s", mountpoint);
	} else {
		hvfs_log(LOG_INFO, "the mount at %s is not ours now: not "
			 "unmounting it", mountpoint);
		mount_disown(se);
	}
	fuse_session_unmount(se);
out_signals:
	fuse_remove_signal_handlers(se);
out:
	report(status_fd, 1);
	tree_stop();
	if (se)
		fuse_session_destroy(se);
	/* After the last open file, before the sources close. */
	console_stop();
	tree_free();
	/* A bulk statistics call still stuck keeps its connection: exit
	 * without closing them. */
	if (stats_stop(hvfs_opts.timeout_ms))
		sources_free();
	fuse_opt_free_args(&fargs);
	free(first_uri);
	free(fsname);
	free(mountpoint_abs);
	free((char *)hvfs_opts.logfile);
	return ret;
}
