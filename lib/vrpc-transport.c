/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The transports of the libvirt client, one ops table each. See
 * vrpc-transport.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hv-driver.h"
#include "sock.h"
#include "vrpc-transport.h"

extern char **environ;

/*
 * virtqemud's socket when it exists, else the URI's (libvirtd's): chosen at
 * each connect, so a host that moves to split daemons is followed. Without
 * a daemon the message names the socket, and for /session says whose
 * daemon is missing (hvfs never starts one, unlike libvirt's client).
 */
static int unix_connect(const struct vrpc_uri *u, const struct timespec *dl,
			struct vrpc_link *ret, char **ret_error)
{
	struct stat st;
	const char *path = u->direct && stat(u->direct, &st) == 0 ? u->direct :
								    u->path;
	int fd = sock_connect_unix(path, dl, NULL);

	/* A daemon that stopped may have removed its socket. */
	if (fd == -ENOENT || fd == -ECONNREFUSED)
		return sock_error(ret_error, -ECONNREFUSED, "%s: %s%s", path,
				  strerror(-fd), u->session && geteuid() != 0 ?
				  " (is this user's session daemon, libvirtd "
				  "or virtqemud, running?)" : "");
	if (fd < 0)
		return sock_error(ret_error, fd, "%s: %s", path,
				  strerror(-fd));
	ret->fd = fd;
	return 0;
}

static int tcp_connect(const struct vrpc_uri *u, const struct timespec *dl,
		       struct vrpc_link *ret, char **ret_error)
{
	int fd = sock_connect_tcp(u->host, u->port, dl, ret_error);

	if (fd < 0)
		return fd;
	ret->fd = fd;
	return 0;
}

/* ---- ssh: a child `ssh HOST PROXY` on the other end of a socketpair ---- */

#define SSH_STDERR_KEEP 2048 /* the tail of ssh's stderr kept for messages */
#define SSH_REAP_MS 1000     /* SIGTERM, then this long before SIGKILL */

struct ssh_child {
	pid_t pid;
	int err_fd; /* the read end of the child's stderr, non-blocking */
	char *host;
	size_t len;
	char tail[SSH_STDERR_KEEP + 1];
};

/* s in single quotes for the remote shell. */
static int shell_quote(FILE *f, const char *s)
{
	fputc('\'', f);
	for (; *s; s++) {
		if (*s == '\'')
			fputs("'\\''", f);
		else
			fputc(*s, f);
	}
	return fputc('\'', f) == EOF ? -1 : 0;
}

/*
 * The command the remote shell runs, as libvirt's client builds it:
 * native: virt-ssh-helper URI; netcat: NETCAT -U SOCKET; auto: the first
 * when the remote has it and no socket= was given, else the second.
 */
static char *ssh_remote_command(const struct vrpc_uri *u)
{
	const char *nc = u->netcat ? u->netcat : "nc";
	char *cmd = NULL, *sock = NULL;
	size_t size = 0;
	FILE *f = open_memstream(&cmd, &size);
	bool native = u->proxy == VRPC_SSH_PROXY_NATIVE;
	bool netcat = u->proxy == VRPC_SSH_PROXY_NETCAT || u->path;

	if (!f)
		return NULL;
	if (u->path)
		sock = strdup(u->path);
	else if (!u->session)
		sock = strdup("/var/run/libvirt/libvirt-sock");
	if (!native && !netcat)
		fputs("if command -v virt-ssh-helper >/dev/null 2>&1; then ", f);
	if (!netcat) {
		fputs("virt-ssh-helper ", f);
		shell_quote(f, u->name);
	}
	if (!native && !netcat)
		fputs("; else ", f);
	if (!native) {
		shell_quote(f, nc);
		fputs(" -U ", f);
		if (sock)
			shell_quote(f, sock);
		else /* the session daemon of the remote user */
			fputs("\"${XDG_RUNTIME_DIR:-$HOME/.cache}/libvirt/"
			      "libvirt-sock\"", f);
	}
	if (!native && !netcat)
		fputs("; fi", f);
	free(sock);
	if (fclose(f) != 0) {
		free(cmd);
		return NULL;
	}
	return cmd;
}

/* Reads what ssh wrote on stderr, keeping the tail; logs each read. */
static void ssh_drain(struct ssh_child *c, int wait_ms)
{
	struct pollfd pfd = { .fd = c->err_fd, .events = POLLIN };
	int64_t until = sock_now_ms() + wait_ms;

	while (c->err_fd >= 0) {
		char buf[1024];
		ssize_t n = read(c->err_fd, buf, sizeof(buf));

		if (n > 0) {
			hvd_debug("ssh %s: %.*s", c->host, (int)n, buf);
			/* buf is smaller than the tail: keep the end. */
			size_t keep = c->len + (size_t)n > SSH_STDERR_KEEP ?
					      SSH_STDERR_KEEP - (size_t)n :
					      c->len;

			memmove(c->tail, c->tail + c->len - keep, keep);
			memcpy(c->tail + keep, buf, (size_t)n);
			c->len = keep + (size_t)n;
			continue;
		}
		if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
			close(c->err_fd);
			c->err_fd = -1;
			break;
		}
		if (errno == EINTR)
			continue;
		int64_t left = until - sock_now_ms();

		if (left <= 0 || poll(&pfd, 1, (int)left) == 0)
			break;
	}
	c->tail[c->len] = '\0';
}

static int ssh_connect(const struct vrpc_uri *u, const struct timespec *dl,
		       struct vrpc_link *ret, char **ret_error)
{
	int sv[2] = { -1, -1 }, ep[2] = { -1, -1 }, r, argc = 0;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	struct ssh_child *c;
	const char *argv[24];
	char *cmd;
	sigset_t none, dfl;

	(void)dl; /* the handshake over the link runs within it */
	c = calloc(1, sizeof(*c));
	cmd = ssh_remote_command(u);
	if (!c || !cmd || !(c->host = strdup(u->host))) {
		r = -ENOMEM;
		goto fail_alloc;
	}
	c->err_fd = -1;
	argv[argc++] = "ssh";
	argv[argc++] = "-T";
	argv[argc++] = "-e";
	argv[argc++] = "none";
	argv[argc++] = "-o";
	argv[argc++] = "BatchMode=yes";
	if (u->no_verify) {
		argv[argc++] = "-o";
		argv[argc++] = "StrictHostKeyChecking=no";
	}
	if (u->port) {
		argv[argc++] = "-p";
		argv[argc++] = u->port;
	}
	if (u->user) {
		argv[argc++] = "-l";
		argv[argc++] = u->user;
	}
	if (u->keyfile) {
		argv[argc++] = "-i";
		argv[argc++] = u->keyfile;
	}
	argv[argc++] = "--";
	argv[argc++] = u->host;
	argv[argc++] = cmd;
	argv[argc] = NULL;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 ||
	    pipe2(ep, O_CLOEXEC) < 0) {
		r = -errno;
		goto fail_fds;
	}
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, sv[1], 0);
	posix_spawn_file_actions_adddup2(&fa, sv[1], 1);
	posix_spawn_file_actions_adddup2(&fa, ep[1], 2);
	posix_spawnattr_init(&attr);
	sigemptyset(&none);
	sigemptyset(&dfl);
	sigaddset(&dfl, SIGPIPE);
	sigaddset(&dfl, SIGINT);
	sigaddset(&dfl, SIGTERM);
	sigaddset(&dfl, SIGHUP);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &dfl);
	/* Its own process group: a ^C at the mount's terminal is not its. */
	posix_spawnattr_setpgroup(&attr, 0);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK |
						POSIX_SPAWN_SETSIGDEF |
						POSIX_SPAWN_SETPGROUP);
	r = -posix_spawnp(&c->pid, "ssh", &fa, &attr, (char **)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	if (r < 0)
		goto fail_fds;
	close(sv[1]);
	close(ep[1]);
	if (fcntl(sv[0], F_SETFL, O_NONBLOCK) < 0 ||
	    fcntl(ep[0], F_SETFL, O_NONBLOCK) < 0) {
		r = -errno;
		ret->fd = sv[0];
		c->err_fd = ep[0];
		ret->priv = c;
		vrpc_transport_close(ret);
		free(cmd);
		return sock_error(ret_error, r, "ssh: %s", strerror(-r));
	}
	hvd_debug("ssh %s: started pid %d: %s", u->host, (int)c->pid, cmd);
	free(cmd);
	c->err_fd = ep[0];
	ret->fd = sv[0];
	ret->priv = c;
	return 0;

fail_fds:
	for (int i = 0; i < 2; i++) {
		if (sv[i] >= 0)
			close(sv[i]);
		if (ep[i] >= 0)
			close(ep[i]);
	}
fail_alloc:
	if (c)
		free(c->host);
	free(c);
	free(cmd);
	return sock_error(ret_error, r, "cannot run ssh: %s", strerror(-r));
}

/* Waits up to ms for pid; true once it is reaped. */
static bool reap_within(pid_t pid, int ms)
{
	for (int64_t until = sock_now_ms() + ms;;) {
		pid_t w = waitpid(pid, NULL, WNOHANG);

		if (w == pid || (w < 0 && errno != EINTR))
			return true;
		if (sock_now_ms() >= until)
			return false;
		usleep(10000);
	}
}

static void ssh_close(struct vrpc_link *l)
{
	struct ssh_child *c = l->priv;

	close(l->fd);
	if (!c)
		return;
	/* ssh ends on its own once its stdin is gone; a hung one is told. */
	if (!reap_within(c->pid, 100)) {
		kill(c->pid, SIGTERM);
		if (!reap_within(c->pid, SSH_REAP_MS)) {
			kill(c->pid, SIGKILL);
			while (waitpid(c->pid, NULL, 0) < 0 && errno == EINTR)
				;
		}
	}
	ssh_drain(c, 0);
	if (c->err_fd >= 0)
		close(c->err_fd);
	free(c->host);
	free(c);
}

/* The last line of what ssh said, with the errno it means. */
static int ssh_explain(struct vrpc_link *l, int err, const struct timespec *dl,
		       char **ret_error)
{
	static const struct {
		const char *says;
		int err;
	} meanings[] = {
		{ "Host key verification failed", -EACCES },
		{ "REMOTE HOST IDENTIFICATION HAS CHANGED", -EACCES },
		{ "Permission denied", -EACCES },
		{ "Connection refused", -ECONNREFUSED },
		{ "Could not resolve hostname", -ENXIO },
		{ "No route to host", -EHOSTUNREACH },
		{ "Connection timed out", -ETIMEDOUT },
	};
	struct ssh_child *c = l->priv;
	char *end, *line;
	int ms = sock_ms_left(dl);

	if (!c)
		return err;
	/* ssh that gave up has closed stderr or is about to. */
	ssh_drain(c, ms < 1000 ? ms : 1000);
	end = c->tail + c->len;
	while (end > c->tail && (end[-1] == '\n' || end[-1] == '\r'))
		*--end = '\0';
	if (end == c->tail)
		return err;
	for (size_t i = 0; i < sizeof(meanings) / sizeof(*meanings); i++)
		if (strstr(c->tail, meanings[i].says)) {
			err = meanings[i].err;
			break;
		}
	line = end;
	while (line > c->tail && line[-1] != '\n')
		line--;
	/* "Host key verification failed." follows the warning banner; the
	 * first line of that banner names the cause. */
	if (strstr(c->tail, "REMOTE HOST IDENTIFICATION HAS CHANGED"))
		return sock_error(ret_error, err,
				  "ssh %s: the host key does not match "
				  "known_hosts (REMOTE HOST IDENTIFICATION HAS "
				  "CHANGED): %s", c->host, line);
	return sock_error(ret_error, err, "ssh %s: %s", c->host, line);
}

static const struct vrpc_transport_ops transports[] = {
	[VRPC_TRANSPORT_UNIX] = { .name = "unix", .connect = unix_connect },
	[VRPC_TRANSPORT_TCP] = { .name = "tcp", .connect = tcp_connect },
	[VRPC_TRANSPORT_SSH] = { .name = "ssh", .connect = ssh_connect,
				 .close = ssh_close, .explain = ssh_explain },
	[VRPC_TRANSPORT_TLS] = { .name = "tls", .connect = vrpc_tls_connect,
				 .close = vrpc_tls_close,
				 .explain = vrpc_tls_explain },
};

int vrpc_transport_connect(const struct vrpc_uri *u, const struct timespec *dl,
			   struct vrpc_link *ret, char **ret_error)
{
	const struct vrpc_transport_ops *ops;
	struct vrpc_link l = VRPC_LINK_NONE;
	int r;

	if ((unsigned)u->transport >= sizeof(transports) / sizeof(*transports))
		return sock_error(ret_error, -EOPNOTSUPP,
				  "transport %d is not supported",
				  (int)u->transport);
	ops = &transports[u->transport];
	l.ops = ops;
	r = ops->connect(u, dl, &l, ret_error);
	if (r < 0)
		return r;
	*ret = l;
	return 0;
}

int vrpc_transport_explain(struct vrpc_link *l, int err,
			   const struct timespec *dl, char **ret_error)
{
	if (l->fd < 0 || !l->ops || !l->ops->explain)
		return err;
	return l->ops->explain(l, err, dl, ret_error);
}

void vrpc_transport_close(struct vrpc_link *l)
{
	if (l->fd < 0)
		return;
	if (l->ops && l->ops->close)
		l->ops->close(l);
	else
		close(l->fd);
	*l = VRPC_LINK_NONE;
}
