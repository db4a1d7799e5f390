/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * SASL for the libvirt client: the exchange (AUTH_SASL_INIT/START/STEP)
 * driven through Cyrus SASL, the credentials callbacks fed from auth.conf,
 * and the security layer's encode and decode. See vrpc-sasl.h.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sasl/sasl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "sock.h"
#include "vrpc-authfile.h"
#include "vrpc-sasl.h"

/* What libvirt asks for on a link that is not secure by itself. */
#define SASL_MIN_SSF_INSECURE 56
#define SASL_MAX_BUF 65536
/* Raw bytes read from the link at a time, then decoded. */
#define SASL_READ_CHUNK 65536
/* Cyrus SASL's callback table stores every callback as int (*)(void). */
#define SASL_CB(fn) ((int (*)(void))(void (*)(void))(fn))

/* The credentials callbacks' context, for the exchange only. */
struct creds {
	const char *host;
	char *file;       /* the auth.conf read, or NULL */
	char *text;       /* its contents */
	char *why;        /* why there is no credential */
	char *authname, *username, *realm;
	sasl_secret_t *secret;
};

struct vrpc_sasl {
	sasl_conn_t *conn;
	sasl_callback_t cbs[5]; /* conn's, for its whole life */
	struct creds cr;        /* the callbacks' context */
	pthread_mutex_t lock;  /* around Cyrus SASL's calls on conn */
	size_t max_chunk;      /* SASL_MAXOUTBUF: input limit of one encode */
	/* Decoded bytes not yet taken by the reader. */
	uint8_t *dec;
	size_t dec_len, dec_off;
	uint8_t *raw;
};

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_result;

static void init_cyrus(void)
{
	init_result = sasl_client_init(NULL);
}

/* The value of key for the host, or NULL with creds->why set. */
static char *cred(struct creds *cr, const char *key)
{
	char *v = NULL, *err = NULL;

	if (!cr->file) {
		if (!cr->why)
			cr->why = strdup("no auth.conf (authfile=, "
					 "$XDG_CONFIG_HOME/libvirt/auth.conf, "
					 "/etc/libvirt/auth.conf)");
		return NULL;
	}
	if (!cr->text && vrpc_authfile_read(cr->file, &cr->text, &err) < 0) {
		free(cr->why);
		cr->why = err;
		return NULL;
	}
	if (vrpc_authfile_lookup(cr->text, cr->host, key, &v, &err) < 0) {
		free(cr->why);
		if (asprintf(&cr->why, "%s: %s", cr->file, err) < 0)
			cr->why = NULL;
		free(err);
		return NULL;
	}
	if (!v && !cr->why &&
	    asprintf(&cr->why, "no %s for host %s in %s", key, cr->host,
		     cr->file) < 0)
		cr->why = NULL;
	return v;
}

static int cb_simple(void *context, int id, const char **result,
		     unsigned *len)
{
	struct creds *cr = context;

	if (id == SASL_CB_AUTHNAME) {
		if (!cr->authname)
			cr->authname = cred(cr, "authname");
		if (!cr->authname)
			return SASL_FAIL;
		*result = cr->authname;
	} else if (id == SASL_CB_USER) {
		/* The identity to act as: none unless the file names one. */
		if (!cr->username && cr->file && cr->text)
			vrpc_authfile_lookup(cr->text, cr->host, "username",
					     &cr->username, NULL);
		*result = cr->username ? cr->username : "";
	} else {
		return SASL_FAIL;
	}
	if (len)
		*len = strlen(*result);
	return SASL_OK;
}

static int cb_pass(sasl_conn_t *conn, void *context, int id,
		   sasl_secret_t **psecret)
{
	struct creds *cr = context;
	char *pw;
	size_t n;

	(void)conn;
	if (id != SASL_CB_PASS)
		return SASL_FAIL;
	if (!cr->secret) {
		pw = cred(cr, "password");
		if (!pw)
			return SASL_FAIL;
		n = strlen(pw);
		cr->secret = malloc(sizeof(*cr->secret) + n + 1);
		if (!cr->secret) {
			free(pw);
			return SASL_NOMEM;
		}
		cr->secret->len = n;
		memcpy(cr->secret->data, pw, n + 1);
		explicit_bzero(pw, n);
		free(pw);
	}
	*psecret = cr->secret;
	return SASL_OK;
}

static int cb_realm(void *context, int id, const char **avail,
		    const char **result)
{
	struct creds *cr = context;

	if (id != SASL_CB_GETREALM)
		return SASL_FAIL;
	if (!cr->realm && cr->file && cr->text)
		vrpc_authfile_lookup(cr->text, cr->host, "realm", &cr->realm,
				     NULL);
	/* The file's realm, else the daemon's first (its host name). */
	*result = cr->realm ? cr->realm : avail && avail[0] ? avail[0] : "";
	return SASL_OK;
}

static void creds_release(struct creds *cr)
{
	free(cr->file);
	if (cr->text)
		explicit_bzero(cr->text, strlen(cr->text));
	free(cr->text);
	free(cr->why);
	free(cr->authname);
	free(cr->username);
	free(cr->realm);
	if (cr->secret)
		explicit_bzero(cr->secret->data, cr->secret->len);
	free(cr->secret);
	*cr = (struct creds){ .host = cr->host };
}

/* "ADDR;PORT" of an IP socket, as Cyrus SASL wants; NULL otherwise. */
static char *ip_string(int fd, bool peer)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[INET6_ADDRSTRLEN], *s = NULL;
	const void *a;
	unsigned port;

	if ((peer ? getpeername(fd, (struct sockaddr *)&ss, &sl) :
		    getsockname(fd, (struct sockaddr *)&ss, &sl)) < 0)
		return NULL;
	if (ss.ss_family == AF_INET) {
		a = &((struct sockaddr_in *)&ss)->sin_addr;
		port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	} else if (ss.ss_family == AF_INET6) {
		a = &((struct sockaddr_in6 *)&ss)->sin6_addr;
		port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	} else {
		return NULL;
	}
	if (!inet_ntop(ss.ss_family, a, host, sizeof(host)) ||
	    asprintf(&s, "%s;%u", host, port) < 0)
		return NULL;
	return s;
}

static int sasl_fail(const struct vrpc_uri *u, struct creds *cr, sasl_conn_t *conn,
		     int err, const char *what, char **ret_error)
{
	if (cr->why)
		return sock_error(ret_error, -EACCES, "%s: SASL %s failed: %s",
				  u->name, what, cr->why);
	return sock_error(ret_error, err == SASL_NOMEM ? -ENOMEM : -EACCES,
			  "%s: SASL %s failed: %s", u->name, what,
			  conn ? sasl_errdetail(conn) :
				 sasl_errstring(err, NULL, NULL));
}

/* The daemon's refusal of an AUTH_SASL_* call, said to be SASL's. */
static int refused(const struct vrpc_uri *u, int r, char **ret_error)
{
	char *msg = NULL;

	if (r == -EACCES && ret_error && *ret_error &&
	    asprintf(&msg, "%s: SASL authentication refused by the daemon: %s",
		     u->name, *ret_error) >= 0) {
		free(*ret_error);
		*ret_error = msg;
	}
	return r;
}

/* One START (mech != NULL) or STEP with the client's token. */
static int exchange(const struct vrpc_uri *u, vrpc_sasl_call_fn call,
		    void *ud, const char *mech, const char *out,
		    unsigned outlen, vrpc_auth_sasl_step_ret *ret,
		    char **ret_error)
{
	vrpc_nonnull_string m = (char *)mech;
	vrpc_auth_sasl_start_args sa = {
		.mech = m, .nil = !out,
		.data = { outlen, (char *)out },
	};
	vrpc_auth_sasl_step_args st = {
		.nil = !out,
		.data = { outlen, (char *)out },
	};
	int r;

	if (outlen > VRPC_AUTH_SASL_DATA_MAX)
		return sock_error(ret_error, -EACCES, "%s: SASL token of %u "
				  "bytes is too long", u->name, outlen);
	if (mech)
		r = call(ud, VRPC_PROC_AUTH_SASL_START,
			 VRPC_XDR(xdr_vrpc_auth_sasl_start_args), &sa,
			 VRPC_XDR(xdr_vrpc_auth_sasl_step_ret), ret, ret_error);
	else
		r = call(ud, VRPC_PROC_AUTH_SASL_STEP,
			 VRPC_XDR(xdr_vrpc_auth_sasl_step_args), &st,
			 VRPC_XDR(xdr_vrpc_auth_sasl_step_ret), ret, ret_error);
	return refused(u, r, ret_error);
}

int vrpc_sasl_auth(const struct vrpc_uri *u, int fd, vrpc_sasl_call_fn call,
		   void *userdata, struct vrpc_sasl **ret, char **ret_error)
{
	bool secure = u->transport != VRPC_TRANSPORT_TCP;
	sasl_security_properties_t sp = {
		.min_ssf = secure ? 0 : SASL_MIN_SSF_INSECURE,
		.max_ssf = secure ? 0 : 100000,
		.maxbufsize = SASL_MAX_BUF,
		/* Over an open link, nothing a sniffer can replay. */
		.security_flags = secure ? 0 : SASL_SEC_NOANONYMOUS |
					       SASL_SEC_NOPLAINTEXT,
	};
	vrpc_auth_sasl_init_ret init = { 0 };
	vrpc_auth_sasl_step_ret sr = { 0 };
	struct vrpc_sasl *s;
	struct creds *cr;
	char *local = NULL, *remote = NULL;
	const char *out = NULL, *mech = NULL;
	unsigned outlen = 0;
	const void *v;
	int err, r, complete;

	*ret = NULL;
	pthread_once(&init_once, init_cyrus);
	if (init_result != SASL_OK)
		return sock_error(ret_error, -EACCES, "%s: cannot initialise "
				  "Cyrus SASL: %s", u->name,
				  sasl_errstring(init_result, NULL, NULL));
	/* Cyrus SASL keeps the callback table, and calls it, for as long as
	 * the session lives: both live in s. */
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	pthread_mutex_init(&s->lock, NULL);
	cr = &s->cr;
	cr->host = u->host ? u->host : "localhost";
	s->cbs[0] = (sasl_callback_t){ SASL_CB_AUTHNAME, SASL_CB(cb_simple),
				       cr };
	s->cbs[1] = (sasl_callback_t){ SASL_CB_USER, SASL_CB(cb_simple), cr };
	s->cbs[2] = (sasl_callback_t){ SASL_CB_PASS, SASL_CB(cb_pass), cr };
	s->cbs[3] = (sasl_callback_t){ SASL_CB_GETREALM, SASL_CB(cb_realm),
				       cr };
	s->cbs[4] = (sasl_callback_t){ SASL_CB_LIST_END, NULL, NULL };
	cr->file = vrpc_authfile_path(u->authfile);

	r = call(userdata, VRPC_PROC_AUTH_SASL_INIT, NULL, NULL,
		 VRPC_XDR(xdr_vrpc_auth_sasl_init_ret), &init, ret_error);
	if (r < 0) {
		/* libvirtd refuses INIT when no mechanism it allows fits the
		 * link (no security layer possible over TCP). */
		r = refused(u, r, ret_error);
		goto out;
	}

	local = ip_string(fd, false);
	remote = ip_string(fd, true);
	err = sasl_client_new("libvirt", cr->host, local, remote, s->cbs,
			      SASL_SUCCESS_DATA, &s->conn);
	if (err != SASL_OK) {
		s->conn = NULL;
		r = sasl_fail(u, cr, NULL, err, "setup", ret_error);
		goto out;
	}
	err = sasl_setprop(s->conn, SASL_SEC_PROPS, &sp);
	if (err != SASL_OK) {
		r = sasl_fail(u, cr, s->conn, err, "setup", ret_error);
		goto out;
	}

	err = sasl_client_start(s->conn, init.mechlist, NULL, &out, &outlen,
				&mech);
	if (err != SASL_OK && err != SASL_CONTINUE) {
		char *why = NULL;

		if (!cr->why && asprintf(&why, "%s (the daemon offers %s)",
					 sasl_errdetail(s->conn),
					 init.mechlist) >= 0)
			cr->why = why;
		r = sasl_fail(u, cr, s->conn, err, "start", ret_error);
		goto out;
	}
	r = exchange(u, call, userdata, mech, out, outlen, &sr, ret_error);
	if (r < 0)
		goto out;

	/* The client always steps at least once, so that a server that
	 * claims completion too early is caught (mutual authentication). */
	for (;;) {
		complete = sr.complete;
		err = sasl_client_step(s->conn,
				       sr.nil ? NULL : sr.data.data_val,
				       sr.nil ? 0 : sr.data.data_len, NULL,
				       &out, &outlen);
		xdr_free(VRPC_XDR(xdr_vrpc_auth_sasl_step_ret), &sr);
		memset(&sr, 0, sizeof(sr));
		if (err != SASL_OK && err != SASL_CONTINUE) {
			r = sasl_fail(u, cr, s->conn, err, "step", ret_error);
			goto out;
		}
		if (complete && err == SASL_OK)
			break;
		r = exchange(u, call, userdata, NULL, out, outlen, &sr, ret_error);
		if (r < 0)
			goto out;
		if (sr.complete && err == SASL_OK)
			break;
	}

	err = sasl_getprop(s->conn, SASL_SSF, &v);
	if (err != SASL_OK) {
		r = sasl_fail(u, cr, s->conn, err, "layer", ret_error);
		goto out;
	}
	if (!secure && *(const sasl_ssf_t *)v < SASL_MIN_SSF_INSECURE) {
		r = sock_error(ret_error, -EACCES, "%s: SASL %s negotiated a "
			       "security layer of %u bits, less than %d",
			       u->name, mech, *(const sasl_ssf_t *)v,
			       SASL_MIN_SSF_INSECURE);
		goto out;
	}
	r = 0;
	if (*(const sasl_ssf_t *)v == 0)
		goto out; /* authenticated, no layer */

	err = sasl_getprop(s->conn, SASL_MAXOUTBUF, &v);
	if (err != SASL_OK || *(const unsigned *)v == 0) {
		r = sasl_fail(u, cr, s->conn, err, "layer", ret_error);
		goto out;
	}
	s->max_chunk = *(const unsigned *)v;
	s->raw = malloc(SASL_READ_CHUNK);
	if (!s->raw) {
		r = -ENOMEM;
		goto out;
	}
	*ret = s;
	s = NULL;
out:
	/* The secrets are not needed past the exchange. */
	if (*ret)
		creds_release(&(*ret)->cr);
	vrpc_sasl_free(s);
	xdr_free(VRPC_XDR(xdr_vrpc_auth_sasl_init_ret), &init);
	xdr_free(VRPC_XDR(xdr_vrpc_auth_sasl_step_ret), &sr);
	free(local);
	free(remote);
	return r;
}

size_t vrpc_sasl_max_chunk(const struct vrpc_sasl *s)
{
	return s->max_chunk;
}

int vrpc_sasl_encode(struct vrpc_sasl *s, const uint8_t *in, size_t len,
		     const uint8_t **ret, size_t *ret_len)
{
	const char *out;
	unsigned outlen;
	int err;

	if (len > s->max_chunk)
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	err = sasl_encode(s->conn, (const char *)in, len, &out, &outlen);
	pthread_mutex_unlock(&s->lock);
	if (err != SASL_OK)
		return err == SASL_NOMEM ? -ENOMEM : -EPROTO;
	*ret = (const uint8_t *)out;
	*ret_len = outlen;
	return 0;
}

ssize_t vrpc_sasl_recv(struct vrpc_sasl *s, int fd, uint8_t *buf,
		       size_t size)
{
	while (s->dec_off == s->dec_len) {
		const char *out;
		unsigned outlen;
		ssize_t n;
		int err;

		n = recv(fd, s->raw, SASL_READ_CHUNK, MSG_DONTWAIT);
		if (n <= 0)
			return n;
		pthread_mutex_lock(&s->lock);
		err = sasl_decode(s->conn, (const char *)s->raw, n, &out,
				  &outlen);
		if (err == SASL_OK && outlen > 0) {
			/* Cyrus keeps out only until the next decode. */
			uint8_t *d = realloc(s->dec, outlen);

			if (!d) {
				err = SASL_NOMEM;
			} else {
				memcpy(d, out, outlen);
				s->dec = d;
				s->dec_off = 0;
				s->dec_len = outlen;
			}
		}
		pthread_mutex_unlock(&s->lock);
		if (err != SASL_OK) {
			errno = err == SASL_NOMEM ? ENOMEM : EPROTO;
			return -1;
		}
		if (outlen == 0) {
			/* Only part of a frame so far. */
			errno = EAGAIN;
			return -1;
		}
	}
	if (size > s->dec_len - s->dec_off)
		size = s->dec_len - s->dec_off;
	memcpy(buf, s->dec + s->dec_off, size);
	s->dec_off += size;
	return size;
}

struct vrpc_sasl *vrpc_sasl_free(struct vrpc_sasl *s)
{
	if (!s)
		return NULL;
	if (s->conn)
		sasl_dispose(&s->conn);
	creds_release(&s->cr);
	pthread_mutex_destroy(&s->lock);
	free(s->dec);
	free(s->raw);
	free(s);
	return NULL;
}
