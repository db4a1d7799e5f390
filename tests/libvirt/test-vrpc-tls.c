/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The TLS transport (lib/vrpc-tls.c) against a GnuTLS server in a thread of
 * this program, with certificates certtool makes in a temporary directory:
 * bytes both ways through the relay (more than the socket buffers hold),
 * libvirtd's verdict byte, and each way a server can fail us, each with its
 * errno and message, within the deadline.
 */
#include <errno.h>
#include <gnutls/gnutls.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "../check.h"
#include "sock.h"
#include "vrpc-transport.h"

static char dir[] = "/tmp/hvfs-tls-test.XXXXXX";

enum mode {
	ECHO,        /* handshake, verdict 1, then echo until EOF */
	VERDICT0,    /* handshake, verdict 0 */
	REJECT,      /* handshake, then close (libvirtd refusing us) */
	ALERT,       /* handshake, then a fatal alert */
	CLOSE_MID,   /* read part of the ClientHello, close */
	GARBAGE,     /* answer the ClientHello with bytes that are no TLS */
	SILENT,      /* accept, say nothing */
};

struct server {
	enum mode mode;
	const char *cert; /* "good" or "other" */
	int lfd;
	int port;
	pthread_t thread;
};

static void *serve(void *arg)
{
	struct server *sv = arg;
	gnutls_certificate_credentials_t cred;
	gnutls_session_t s;
	char crt[512], key[512];
	uint8_t buf[4096];
	int fd = accept(sv->lfd, NULL, NULL);

	if (fd < 0)
		return NULL;
	if (sv->mode == CLOSE_MID || sv->mode == GARBAGE ||
	    sv->mode == SILENT) {
		if (sv->mode != SILENT && recv(fd, buf, 50, 0) > 0 &&
		    sv->mode == GARBAGE) {
			memset(buf, 'x', sizeof(buf));
			send(fd, "HTTP/1.0 400 Bad\r\n\r\n", 20, MSG_NOSIGNAL);
			send(fd, buf, sizeof(buf), MSG_NOSIGNAL);
		}
		/* Until the client gives up. */
		while (sv->mode != CLOSE_MID &&
		       recv(fd, buf, sizeof(buf), 0) > 0)
			;
		close(fd);
		return NULL;
	}
	snprintf(crt, sizeof(crt), "%s/%scert.pem", dir, sv->cert);
	snprintf(key, sizeof(key), "%s/%skey.pem", dir, sv->cert);
	REQUIRE(gnutls_certificate_allocate_credentials(&cred) == 0);
	REQUIRE(gnutls_certificate_set_x509_key_file(cred, crt, key,
						     GNUTLS_X509_FMT_PEM) == 0);
	REQUIRE(gnutls_init(&s, GNUTLS_SERVER) == 0);
	gnutls_set_default_priority(s);
	gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, cred);
	gnutls_transport_set_int(s, fd);
	if (gnutls_handshake(s) == 0) {
		ssize_t n;

		switch (sv->mode) {
		case ECHO:
			gnutls_record_send(s, "\1", 1);
			while ((n = gnutls_record_recv(s, buf, sizeof(buf))) > 0)
				for (ssize_t off = 0; off < n;) {
					ssize_t w = gnutls_record_send(
						s, buf + off, (size_t)(n - off));
					if (w <= 0)
						break;
					off += w;
				}
			break;
		case VERDICT0:
			gnutls_record_send(s, "\0", 1);
			break;
		case ALERT:
			gnutls_alert_send(s, GNUTLS_AL_FATAL,
					  GNUTLS_A_BAD_CERTIFICATE);
			break;
		default:
			break;
		}
	}
	/* Lets the client read what came before the end. */
	shutdown(fd, SHUT_WR);
	while (recv(fd, buf, sizeof(buf), 0) > 0)
		;
	gnutls_deinit(s);
	gnutls_certificate_free_credentials(cred);
	close(fd);
	return NULL;
}

static void server_start(struct server *sv, enum mode mode, const char *cert)
{
	struct sockaddr_in a = { .sin_family = AF_INET };
	socklen_t len = sizeof(a);

	sv->mode = mode;
	sv->cert = cert;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sv->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	REQUIRE(sv->lfd >= 0);
	REQUIRE(bind(sv->lfd, (struct sockaddr *)&a, sizeof(a)) == 0);
	REQUIRE(listen(sv->lfd, 4) == 0);
	REQUIRE(getsockname(sv->lfd, (struct sockaddr *)&a, &len) == 0);
	sv->port = ntohs(a.sin_port);
	REQUIRE(pthread_create(&sv->thread, NULL, serve, sv) == 0);
}

static void server_stop(struct server *sv)
{
	/* Wakes an accept() that no client came to. */
	shutdown(sv->lfd, SHUT_RDWR);
	pthread_join(sv->thread, NULL);
	close(sv->lfd);
}

/* Connects to sv as host with ?pkipath=dir/pki (and extra); the errno. */
static int try(struct server *sv, const char *host, const char *pki,
	       const char *extra, int ms, struct vrpc_link *l, char **err)
{
	struct vrpc_uri *u = NULL;
	char uri[1024];
	struct timespec dl = sock_deadline(ms);
	int r;

	snprintf(uri, sizeof(uri), "qemu+tls://%s:%d/system?pkipath=%s/%s%s",
		 host, sv->port, dir, pki, extra);
	REQUIRE(vrpc_uri_parse(uri, &u, err) == 0);
	*l = VRPC_LINK_NONE;
	r = vrpc_transport_connect(u, &dl, l, err);
	vrpc_uri_free(u);
	return r;
}

/* One failure case: connect, check errno and message, within the time. */
static void failing(enum mode mode, const char *cert, const char *host,
		    const char *pki, int want, const char *says)
{
	struct server sv;
	struct vrpc_link l;
	char *err = NULL;
	int64_t t0 = sock_now_ms();
	int r;

	server_start(&sv, mode, cert);
	r = try(&sv, host, pki, "", 2000, &l, &err);
	if (r != want || !err || !strstr(err, says))
		fprintf(stderr, "mode %d: %d %s\n", (int)mode, r,
			err ? err : "(no message)");
	CHECK(r == want);
	CHECK(err && strstr(err, says));
	CHECK(sock_now_ms() - t0 < 4000);
	CHECK(l.fd < 0);
	if (r == 0)
		vrpc_transport_close(&l);
	free(err);
	server_stop(&sv);
}

struct writer {
	int fd;
	const uint8_t *buf;
	size_t size;
	int r;
};

static void *write_all(void *arg)
{
	struct writer *w = arg;
	struct timespec dl = sock_deadline(20000);

	w->r = sock_write_all(w->fd, w->buf, w->size, &dl, NULL);
	return NULL;
}

static void test_echo(void)
{
	enum { SIZE = 1 << 20 };
	uint8_t *out = malloc(SIZE), *in = malloc(SIZE);
	struct server sv;
	struct vrpc_link l;
	struct writer w;
	pthread_t t;
	char *err = NULL;
	size_t got = 0;

	REQUIRE(out && in);
	for (size_t i = 0; i < SIZE; i++)
		out[i] = (uint8_t)(i * 7 + i / 251);
	server_start(&sv, ECHO, "good");
	CHECK(try(&sv, "127.0.0.1", "pki", "", 5000, &l, &err) == 0);
	if (err)
		fprintf(stderr, "echo: %s\n", err);
	REQUIRE(l.fd >= 0);
	/* Both ways at once, more than any socket buffer holds. */
	w = (struct writer){ l.fd, out, SIZE, 1 };
	REQUIRE(pthread_create(&t, NULL, write_all, &w) == 0);
	while (got < SIZE) {
		struct pollfd p = { .fd = l.fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, 20000) <= 0)
			break;
		n = recv(l.fd, in + got, SIZE - got, MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN))
			break;
		if (n > 0)
			got += (size_t)n;
	}
	pthread_join(t, NULL);
	CHECK(w.r == 0);
	CHECK(got == SIZE && memcmp(in, out, SIZE) == 0);
	/* Closing ends the relay and the session; the server sees EOF. */
	vrpc_transport_close(&l);
	CHECK(l.fd < 0);
	server_stop(&sv);
	free(err);
	free(in);
	free(out);
}

/* The server ends the session: the client reads EOF on the link. */
static void test_server_goes(void)
{
	struct server sv;
	struct vrpc_link l;
	char *err = NULL;
	uint8_t b;

	server_start(&sv, ECHO, "good");
	REQUIRE(try(&sv, "127.0.0.1", "pki", "", 5000, &l, &err) == 0);
	/* The echo server stops when we stop writing: shut our side. */
	shutdown(l.fd, SHUT_WR);
	struct pollfd p = { .fd = l.fd, .events = POLLIN };
	CHECK(poll(&p, 1, 5000) == 1 && recv(l.fd, &b, 1, 0) == 0);
	vrpc_transport_close(&l);
	server_stop(&sv);
	free(err);
}

/*
 * A user who is not root, without pkipath=: the files come from
 * ~/.pki/libvirt/ (HOME is read, as libvirt's client does).
 */
static void test_user_pki(void)
{
	struct server sv;
	char home[512];
	int status = -1;
	pid_t pid;

	snprintf(home, sizeof(home), "%s/home", dir);
	server_start(&sv, ECHO, "good");
	pid = fork();
	REQUIRE(pid >= 0);
	if (pid == 0) {
		struct vrpc_uri *u = NULL;
		struct vrpc_link l = VRPC_LINK_NONE;
		struct timespec dl = sock_deadline(5000);
		char uri[128], *err = NULL;
		int r;

		snprintf(uri, sizeof(uri), "qemu+tls://127.0.0.1:%d/system",
			 sv.port);
		setenv("HOME", home, 1);
		if (setgid(65534) < 0 || setuid(65534) < 0)
			_exit(2);
		if (vrpc_uri_parse(uri, &u, &err) < 0)
			_exit(3);
		r = vrpc_transport_connect(u, &dl, &l, &err);
		if (r < 0)
			fprintf(stderr, "as a user: %s\n", err);
		vrpc_transport_close(&l);
		_exit(r == 0 ? 0 : 1);
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	server_stop(&sv);
}

int main(void)
{
	char cmd[4096];

	REQUIRE(mkdtemp(dir));
	snprintf(cmd, sizeof(cmd),
		 "set -e; cd %s; mkdir pki wrongca\n"
		 "k() { certtool --generate-privkey --key-type=ecdsa "
		 "--outfile $1 2>/dev/null; }\n"
		 "c() { certtool --generate-certificate --load-privkey $1 "
		 "--load-ca-certificate cacert.pem --load-ca-privkey cakey.pem "
		 "--template $2 --outfile $3 2>/dev/null; }\n"
		 "k cakey.pem; k otherkey.pem; k goodkey.pem; k wrongcakey.pem\n"
		 "printf 'cn = t\\nca\\ncert_signing_key\\n' >ca.t\n"
		 "certtool --generate-self-signed --load-privkey cakey.pem "
		 "--template ca.t --outfile cacert.pem 2>/dev/null\n"
		 "certtool --generate-self-signed --load-privkey wrongcakey.pem "
		 "--template ca.t --outfile wrongca/cacert.pem 2>/dev/null\n"
		 "printf 'cn = s\\nip_address = 127.0.0.1\\ntls_www_server\\n"
		 "signing_key\\n' >good.t\n"
		 "printf 'cn = o\\ndns_name = other.example\\ntls_www_server\\n"
		 "signing_key\\n' >other.t\n"
		 "c goodkey.pem good.t goodcert.pem\n"
		 "c otherkey.pem other.t othercert.pem\n"
		 "cp cacert.pem pki/\n"
		 "mkdir -p home/.pki/libvirt; cp cacert.pem home/.pki/libvirt/\n"
		 "chmod -R a+rX .\n", dir);
	REQUIRE(system(cmd) == 0);

	test_echo();
	test_server_goes();
	test_user_pki();
	failing(ECHO, "good", "127.0.0.1", "nopki", -EACCES, "cacert.pem");
	failing(ECHO, "good", "127.0.0.1", "wrongca", -EACCES, "not trusted");
	failing(ECHO, "other", "127.0.0.1", "pki", -EACCES,
		"does not match the host name 127.0.0.1");
	failing(VERDICT0, "good", "127.0.0.1", "pki", -EPROTO,
		"not libvirtd's 1");
	failing(REJECT, "good", "127.0.0.1", "pki", -EACCES,
		"refused this client");
	failing(ALERT, "good", "127.0.0.1", "pki", -EACCES,
		"refused this client");
	failing(CLOSE_MID, "good", "127.0.0.1", "pki", -ECONNRESET,
		"closed the connection");
	failing(GARBAGE, "good", "127.0.0.1", "pki", -EPROTO,
		"TLS handshake with 127.0.0.1 failed");
	failing(SILENT, "good", "127.0.0.1", "pki", -ETIMEDOUT, "timed out");

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	REQUIRE(system(cmd) == 0);
	return check_finish("test-vrpc-tls");
}
