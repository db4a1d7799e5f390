/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The TLS transport of the libvirt client (GnuTLS, as libvirt's own): see
 * vrpc-transport.h. connect() does everything that can fail for a reason a
 * user must read (the PKI files, the handshake, the server's certificate,
 * the daemon's one-byte verdict on ours) within the caller's deadline; then a
 * relay thread carries plaintext between one end of a socketpair (the link
 * the client reads and writes as on any socket) and the TLS session, so the
 * client's reader and writers never touch GnuTLS and one thread alone owns
 * the session.
 */
#include <errno.h>
#include <fcntl.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "hv-driver.h"
#include "sock.h"
#include "vrpc-transport.h"

#define TLS_BUF 16384                 /* one TLS record's worth */
#define TLS_RELAY_STACK (64 * 1024)

struct tls_link {
	gnutls_session_t s;
	gnutls_certificate_credentials_t cred;
	int net;  /* the TCP socket */
	int pair; /* the relay's end of the socketpair */
	char *host;
	pthread_t relay;
	bool have_relay;
	pthread_mutex_t lock;
	char *why; /* guarded by lock: the relay's reason for stopping */
	uint8_t up[TLS_BUF], down[TLS_BUF];
};

/* ---- libvirt's PKI layout ---- */

enum { PKI_CA, PKI_CERT, PKI_KEY, PKI_CRL, PKI_N };

static bool exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

/*
 * The files, as libvirt's client finds them: all in ?pkipath=DIR; else for
 * root /etc/pki/CA/cacert.pem, /etc/pki/libvirt/clientcert.pem and
 * /etc/pki/libvirt/private/clientkey.pem; for anyone else each one in
 * ~/.pki/libvirt/ when it is there, else root's.
 */
static int pki_paths(const struct vrpc_uri *u, char *ret[PKI_N])
{
	static const char *const names[PKI_N] = {
		"cacert.pem", "clientcert.pem", "clientkey.pem", "cacrl.pem"
	};
	static const char *const sys[PKI_N] = {
		"/etc/pki/CA/cacert.pem", "/etc/pki/libvirt/clientcert.pem",
		"/etc/pki/libvirt/private/clientkey.pem",
		"/etc/pki/CA/cacrl.pem"
	};
	const char *home = getenv("HOME");

	for (int i = 0; i < PKI_N; i++) {
		ret[i] = NULL;
		if (u->pkipath) {
			if (asprintf(&ret[i], "%s/%s", u->pkipath, names[i]) < 0)
				ret[i] = NULL;
		} else if (geteuid() != 0 && home && *home) {
			if (asprintf(&ret[i], "%s/.pki/libvirt/%s", home,
				     names[i]) < 0)
				ret[i] = NULL;
			else if (!exists(ret[i])) {
				free(ret[i]);
				ret[i] = strdup(sys[i]);
			}
		} else {
			ret[i] = strdup(sys[i]);
		}
		if (!ret[i]) {
			while (i-- > 0)
				free(ret[i]);
			return -ENOMEM;
		}
	}
	return 0;
}

/* Our own certificate is refused here when out of its dates, as libvirt's
 * client does, rather than by the daemon without a word. */
static int check_own_cert(const char *path, char **ret_error)
{
	gnutls_datum_t data = { NULL, 0 };
	gnutls_x509_crt_t crt;
	time_t now = time(NULL);
	int r = 0;

	if (gnutls_load_file(path, &data) < 0)
		return 0; /* loading it says why */
	if (gnutls_x509_crt_init(&crt) < 0) {
		gnutls_free(data.data);
		return -ENOMEM;
	}
	if (gnutls_x509_crt_import(crt, &data, GNUTLS_X509_FMT_PEM) == 0) {
		if (gnutls_x509_crt_get_expiration_time(crt) < now)
			r = sock_error(ret_error, -EACCES,
				       "the client certificate %s has expired",
				       path);
		else if (gnutls_x509_crt_get_activation_time(crt) > now)
			r = sock_error(ret_error, -EACCES,
				       "the client certificate %s is not yet "
				       "active", path);
	}
	gnutls_x509_crt_deinit(crt);
	gnutls_free(data.data);
	return r;
}

static int load_pki(const struct vrpc_uri *u,
		    gnutls_certificate_credentials_t cred, char **ret_error)
{
	char *p[PKI_N];
	int r, g;

	r = pki_paths(u, p);
	if (r < 0)
		return r;
	g = gnutls_certificate_set_x509_trust_file(cred, p[PKI_CA],
						   GNUTLS_X509_FMT_PEM);
	if (g <= 0) {
		r = sock_error(ret_error, -EACCES,
			       "cannot load the CA certificate %s: %s", p[PKI_CA],
			       g == 0 ? "no certificate in it" :
					!exists(p[PKI_CA]) ? "no such file" :
					gnutls_strerror(g));
		goto out;
	}
	if (exists(p[PKI_CRL]) &&
	    (g = gnutls_certificate_set_x509_crl_file(cred, p[PKI_CRL],
						      GNUTLS_X509_FMT_PEM)) < 0) {
		r = sock_error(ret_error, -EACCES,
			       "cannot load the revocation list %s: %s",
			       p[PKI_CRL], gnutls_strerror(g));
		goto out;
	}
	/* Without a certificate of ours, a daemon that wants one says no. */
	if (exists(p[PKI_CERT]) || exists(p[PKI_KEY])) {
		if (!u->no_verify) {
			r = check_own_cert(p[PKI_CERT], ret_error);
			if (r < 0)
				goto out;
		}
		g = gnutls_certificate_set_x509_key_file(cred, p[PKI_CERT],
							 p[PKI_KEY],
							 GNUTLS_X509_FMT_PEM);
		if (g < 0) {
			r = sock_error(ret_error, -EACCES,
				       "cannot load the client certificate %s "
				       "with its key %s: %s", p[PKI_CERT],
				       p[PKI_KEY], gnutls_strerror(g));
			goto out;
		}
	}
	r = 0;
out:
	for (int i = 0; i < PKI_N; i++)
		free(p[i]);
	return r;
}

/* ---- the handshake ---- */

/* Waits until dl for what the session's last call wanted. */
static int wait_net(struct tls_link *t, const struct timespec *dl)
{
	struct pollfd pfd = {
		.fd = t->net,
		.events = gnutls_record_get_direction(t->s) ? POLLOUT : POLLIN,
	};
	int ms = sock_ms_left(dl);

	if (ms <= 0)
		return -ETIMEDOUT;
	if (poll(&pfd, 1, ms) < 0 && errno != EINTR)
		return -errno;
	return 0;
}

/* A GnuTLS failure during the handshake as an errno and a message. */
static int handshake_error(struct tls_link *t, int g, char **ret_error)
{
	int err = -EPROTO;

	if (g == GNUTLS_E_PREMATURE_TERMINATION || g == GNUTLS_E_PUSH_ERROR ||
	    g == GNUTLS_E_PULL_ERROR)
		err = -ECONNRESET;
	if (g == GNUTLS_E_FATAL_ALERT_RECEIVED)
		return sock_error(ret_error, -EACCES,
				  "TLS handshake with %s failed: the server "
				  "sent the alert '%s'", t->host,
				  gnutls_alert_get_name(gnutls_alert_get(t->s)));
	return sock_error(ret_error, err,
			  "TLS handshake with %s failed: %s%s", t->host,
			  gnutls_strerror(g),
			  err == -ECONNRESET ? " (the server closed the "
					       "connection)" :
			  g == GNUTLS_E_UNEXPECTED_PACKET_LENGTH ||
				  g == GNUTLS_E_UNSUPPORTED_VERSION_PACKET ?
					       " (is it a TLS port?)" :
					       "");
}

/* The server's certificate, against our CA and the host name. */
static int verify_server(struct tls_link *t, char **ret_error)
{
	gnutls_datum_t out = { NULL, 0 };
	unsigned status = 0;
	int g, r;

	g = gnutls_certificate_verify_peers3(t->s, t->host, &status);
	if (g < 0)
		return sock_error(ret_error, -EACCES,
				  "cannot verify the certificate of %s: %s",
				  t->host, gnutls_strerror(g));
	if (status == 0)
		return 0;
	if ((status & GNUTLS_CERT_UNEXPECTED_OWNER) &&
	    !(status & ~(unsigned)(GNUTLS_CERT_INVALID |
				   GNUTLS_CERT_UNEXPECTED_OWNER)))
		return sock_error(ret_error, -EACCES,
				  "the server certificate does not match the "
				  "host name %s", t->host);
	if (gnutls_certificate_verification_status_print(
		    status, GNUTLS_CRT_X509, &out, 0) < 0)
		out.data = NULL;
	r = sock_error(ret_error, -EACCES,
		       "the server certificate of %s is not trusted: %s",
		       t->host, out.data ? (char *)out.data : "invalid");
	gnutls_free(out.data);
	return r;
}

/*
 * libvirtd checks our certificate once the handshake is over and then
 * writes one byte, 1, or closes the connection.
 */
static int read_verdict(struct tls_link *t, const struct timespec *dl,
			char **ret_error)
{
	uint8_t b = 0;

	for (;;) {
		ssize_t n = gnutls_record_recv(t->s, &b, 1);

		if (n == 1 && b == 1)
			return 0;
		if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
			int r = wait_net(t, dl);

			if (r == -ETIMEDOUT)
				return sock_error(ret_error, r,
						  "%s did not confirm the TLS "
						  "session in time", t->host);
			if (r < 0)
				return sock_error(ret_error, r, "poll: %s",
						  strerror(-r));
			continue;
		}
		if (n == 1)
			return sock_error(ret_error, -EPROTO,
					  "%s answered the TLS session with "
					  "%u, not libvirtd's 1", t->host, b);
		if (n == GNUTLS_E_FATAL_ALERT_RECEIVED)
			return sock_error(ret_error, -EACCES,
					  "libvirtd on %s refused this client: "
					  "alert '%s'", t->host,
					  gnutls_alert_get_name(
						  gnutls_alert_get(t->s)));
		return sock_error(ret_error, -EACCES,
				  "libvirtd on %s refused this client's "
				  "certificate (not signed by its CA, or not "
				  "in its tls_allowed_dn_list): %s", t->host,
				  n == 0 ? "it closed the connection" :
					   gnutls_strerror((int)n));
	}
}

static int handshake(struct tls_link *t, const struct vrpc_uri *u,
		     const struct timespec *dl, char **ret_error)
{
	int g, r;

	for (;;) {
		g = gnutls_handshake(t->s);
		if (g == GNUTLS_E_SUCCESS)
			break;
		if (g != GNUTLS_E_AGAIN && g != GNUTLS_E_INTERRUPTED &&
		    !(g == GNUTLS_E_WARNING_ALERT_RECEIVED))
			return handshake_error(t, g, ret_error);
		r = wait_net(t, dl);
		if (r == -ETIMEDOUT)
			return sock_error(ret_error, r,
					  "TLS handshake with %s timed out",
					  t->host);
		if (r < 0)
			return sock_error(ret_error, r, "poll: %s",
					  strerror(-r));
	}
	if (!u->no_verify) {
		r = verify_server(t, ret_error);
		if (r < 0)
			return r;
	}
	return read_verdict(t, dl, ret_error);
}

/* ---- the relay ---- */

/* The TLS session failed: why, for explain() and the log. */
static void relay_stop(struct tls_link *t, const char *what)
{
	pthread_mutex_lock(&t->lock);
	if (!t->why && asprintf(&t->why, "TLS %s: %s", t->host, what) < 0)
		t->why = NULL;
	pthread_mutex_unlock(&t->lock);
	hvd_debug("TLS %s: %s", t->host, what);
}

/*
 * Until either side ends: plaintext from the pair goes out as records, and
 * records that come in go to the pair. Both sockets are non-blocking; a
 * side that cannot take more is waited for without holding up the other.
 */
static void *relay_main(void *arg)
{
	struct tls_link *t = arg;
	size_t up_len = 0, down_off = 0, down_len = 0;
	bool send_again = false;

	for (;;) {
		bool progress = false, want_in = false;

		if (down_len == 0) {
			ssize_t n = gnutls_record_recv(t->s, t->down, TLS_BUF);

			if (n > 0) {
				down_off = 0;
				down_len = (size_t)n;
				progress = true;
			} else if (n == 0) {
				hvd_debug("TLS %s: the server closed the "
					  "session", t->host);
				break;
			} else if (n == GNUTLS_E_AGAIN ||
				   n == GNUTLS_E_INTERRUPTED) {
				want_in = true;
			} else if (n != GNUTLS_E_REHANDSHAKE &&
				   !gnutls_error_is_fatal((int)n)) {
				progress = true; /* a warning alert */
			} else {
				relay_stop(t, gnutls_strerror((int)n));
				break;
			}
		}
		if (down_len) {
			ssize_t n = send(t->pair, t->down + down_off, down_len,
					 MSG_DONTWAIT | MSG_NOSIGNAL);

			if (n > 0) {
				down_off += (size_t)n;
				down_len -= (size_t)n;
				progress = true;
			} else if (errno != EAGAIN && errno != EINTR) {
				break; /* the client is gone */
			}
		}
		if (up_len == 0) {
			ssize_t n = recv(t->pair, t->up, TLS_BUF, MSG_DONTWAIT);

			if (n > 0) {
				up_len = (size_t)n;
				progress = true;
			} else if (n == 0 ||
				   (errno != EAGAIN && errno != EINTR)) {
				break; /* the client closed the link */
			}
		}
		if (up_len) {
			ssize_t n = send_again ?
					    gnutls_record_send(t->s, NULL, 0) :
					    gnutls_record_send(t->s, t->up,
							       up_len);

			send_again = n == GNUTLS_E_AGAIN ||
				     n == GNUTLS_E_INTERRUPTED;
			if (n > 0) {
				memmove(t->up, t->up + n, up_len - (size_t)n);
				up_len -= (size_t)n;
				progress = true;
			} else if (!send_again) {
				relay_stop(t, gnutls_strerror((int)n));
				break;
			}
		}
		if (progress)
			continue;

		struct pollfd pfd[2] = {
			{ .fd = t->net, .events = (want_in ? POLLIN : 0) |
						  (send_again ? POLLOUT : 0) },
			{ .fd = t->pair, .events = (up_len ? 0 : POLLIN) |
						   (down_len ? POLLOUT : 0) },
		};

		if (poll(pfd, 2, -1) < 0 && errno != EINTR)
			break;
		/* The client shut the link down, whatever we wait for. */
		if ((pfd[1].revents & (POLLHUP | POLLERR | POLLNVAL)) &&
		    !(pfd[1].revents & POLLIN))
			break;
	}
	/* The client reads the end of the link as a lost connection. */
	shutdown(t->pair, SHUT_RDWR);
	return NULL;
}

/* ---- the ops ---- */

static void tls_free(struct tls_link *t)
{
	if (t->s)
		gnutls_deinit(t->s);
	if (t->cred)
		gnutls_certificate_free_credentials(t->cred);
	if (t->net >= 0)
		close(t->net);
	if (t->pair >= 0)
		close(t->pair);
	pthread_mutex_destroy(&t->lock);
	free(t->why);
	free(t->host);
	free(t);
}

int vrpc_tls_connect(const struct vrpc_uri *u, const struct timespec *dl,
		     struct vrpc_link *ret, char **ret_error)
{
	struct tls_link *t = calloc(1, sizeof(*t));
	int sv[2] = { -1, -1 }, g, r;
	pthread_attr_t attr;

	if (!t)
		return -ENOMEM;
	t->net = t->pair = -1;
	pthread_mutex_init(&t->lock, NULL);
	t->host = strdup(u->host);
	if (!t->host) {
		r = -ENOMEM;
		goto fail;
	}
	if (gnutls_certificate_allocate_credentials(&t->cred) < 0) {
		t->cred = NULL;
		r = -ENOMEM;
		goto fail;
	}
	r = load_pki(u, t->cred, ret_error);
	if (r < 0)
		goto fail;
	r = sock_connect_tcp(u->host, u->port, dl, ret_error);
	if (r < 0)
		goto fail;
	t->net = r;
	if ((g = gnutls_init(&t->s, GNUTLS_CLIENT | GNUTLS_NONBLOCK |
					       GNUTLS_NO_SIGNAL)) < 0 ||
	    (g = gnutls_set_default_priority(t->s)) < 0 ||
	    (g = gnutls_credentials_set(t->s, GNUTLS_CRD_CERTIFICATE,
					t->cred)) < 0) {
		r = sock_error(ret_error, -ENOMEM, "TLS: %s",
			       gnutls_strerror(g));
		goto fail;
	}
	/* Server name indication only for a name, never an address. */
	if (!strchr(u->host, ':') &&
	    strspn(u->host, "0123456789.") != strlen(u->host))
		gnutls_server_name_set(t->s, GNUTLS_NAME_DNS, u->host,
				       strlen(u->host));
	gnutls_transport_set_int(t->s, t->net);
	r = handshake(t, u, dl, ret_error);
	if (r < 0)
		goto fail;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		r = sock_error(ret_error, -errno, "socketpair: %s",
			       strerror(errno));
		goto fail;
	}
	t->pair = sv[1];
	if (fcntl(sv[0], F_SETFL, O_NONBLOCK) < 0 ||
	    fcntl(sv[1], F_SETFL, O_NONBLOCK) < 0) {
		r = sock_error(ret_error, -errno, "fcntl: %s",
			       strerror(errno));
		goto fail;
	}
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, TLS_RELAY_STACK);
	r = -pthread_create(&t->relay, &attr, relay_main, t);
	pthread_attr_destroy(&attr);
	if (r < 0) {
		r = sock_error(ret_error, r, "cannot start the TLS relay: %s",
			       strerror(-r));
		goto fail;
	}
	t->have_relay = true;
	hvd_debug("TLS %s: session up (%s)", u->host,
		  gnutls_protocol_get_name(gnutls_protocol_get_version(t->s)));
	ret->fd = sv[0];
	ret->priv = t;
	return 0;
fail:
	if (sv[0] >= 0)
		close(sv[0]);
	tls_free(t);
	return r;
}

void vrpc_tls_close(struct vrpc_link *l)
{
	struct tls_link *t = l->priv;

	/* The relay sees the link go and ends. */
	shutdown(l->fd, SHUT_RDWR);
	close(l->fd);
	if (!t)
		return;
	if (t->have_relay)
		pthread_join(t->relay, NULL);
	tls_free(t);
}

int vrpc_tls_explain(struct vrpc_link *l, int err, const struct timespec *dl,
		     char **ret_error)
{
	struct tls_link *t = l->priv;
	int r = err;

	(void)dl;
	if (!t)
		return err;
	pthread_mutex_lock(&t->lock);
	if (t->why)
		r = sock_error(ret_error, -EPROTO, "%s", t->why);
	pthread_mutex_unlock(&t->lock);
	return r;
}
