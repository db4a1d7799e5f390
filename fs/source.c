/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The hosts and the sources of domains on them: which connection belongs to
 * which host, opening them, and why a host is unreachable (its .error).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "ino.h"
#include "names.h"
#include "source.h"

/* One hypervisor host: a libvirt connection, and the QMP sources on it. */
struct host {
	char *name;          /* its directory's name (escaped) */
	int index;           /* position in the order given */
	pthread_mutex_t lock; /* guards its sources' error */
};

static struct host **hosts;
static size_t n_hosts;
static struct source **sources;
static size_t n_sources;

size_t sources_count(void)
{
	return n_sources;
}

struct source *source_at(size_t k)
{
	return sources[k];
}

size_t hosts_count(void)
{
	return n_hosts;
}

struct host *host_at(size_t i)
{
	return hosts[i];
}

const char *host_name(const struct host *h)
{
	return h->name;
}

int host_index(const struct host *h)
{
	return h->index;
}

bool hosts_multi(void)
{
	return n_hosts > 1;
}

struct hv_conn *source_conn(struct source *s)
{
	return __atomic_load_n(&s->conn, __ATOMIC_ACQUIRE);
}

bool source_evented(struct source *s)
{
	return __atomic_load_n(&s->evented, __ATOMIC_ACQUIRE);
}

void source_set_evented(struct source *s, bool on)
{
	__atomic_store_n(&s->evented, on, __ATOMIC_RELEASE);
}

bool source_subscribed(struct source *s)
{
	return __atomic_load_n(&s->subscribed, __ATOMIC_ACQUIRE);
}

void source_set_subscribed(struct source *s)
{
	__atomic_store_n(&s->subscribed, true, __ATOMIC_RELEASE);
}

int host_level(const struct host *h)
{
	return hosts_multi() ? h->index : -1;
}

/* ---- hosts ---- */

void source_set_error(struct source *s, const char *op, int err,
			     const char *msg)
{
	struct host *h = s->host;
	const char *uri = s->uri;
	char *text = NULL;
	bool same;

	if (op) {
		char stamp[32];
		const char *ename = strerrorname_np(-err);
		time_t now = time(NULL);
		struct tm tm;

		gmtime_r(&now, &tm);
		strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
		if (asprintf(&text, "%s %s %s: %s (%s)\n", stamp, op, uri,
			     msg ? msg : strerror(-err),
			     ename ? ename : "?") < 0)
			text = NULL;
	}
	pthread_mutex_lock(&h->lock);
	/* The same failure again: compare past the time stamp. */
	same = text && s->error && strcmp(strchr(text, ' '),
					  strchr(s->error, ' ')) == 0;
	if (!text && s->error)
		hvfs_log(LOG_NOTICE, "%s: %s is back", h->name, uri);
	else if (text && !same)
		hvfs_log(LOG_ERR, "%s: %.*s", h->name,
			 (int)strlen(strchr(text, ' ') + 2), /* no "\n" */
			 strchr(text, ' ') + 1);
	free(s->error);
	s->error = text;
	pthread_mutex_unlock(&h->lock);
}

static struct host *host_new(const char *name)
{
	struct host *h = calloc(1, sizeof(*h)), **n;

	if (!h || !(h->name = name_escape(name)))
		goto fail;
	n = reallocarray(hosts, n_hosts + 1, sizeof(*hosts));
	if (!n)
		goto fail;
	hosts = n;
	h->index = (int)n_hosts;
	pthread_mutex_init(&h->lock, NULL);
	hosts[n_hosts++] = h;
	return h;
fail:
	if (h)
		free(h->name);
	free(h);
	return NULL;
}

/*
 * The host part of a URI "scheme://[user@]HOST[:PORT]/path", or "" when
 * it names the local host. A bracketed IPv6 address loses its brackets.
 */
static char *uri_host(const char *uri)
{
	const char *p = strstr(uri, "://"), *end;

	if (!p)
		return strdup("");
	p += 3;
	end = p + strcspn(p, "/?");
	for (const char *at = p; at < end; at++)
		if (*at == '@')
			p = at + 1;
	if (*p == '[') {
		const char *close = memchr(p, ']', end - p);

		if (close)
			return strndup(p + 1, close - p - 1);
	}
	return strndup(p, strcspn(p, ":/?") < (size_t)(end - p) ?
				  strcspn(p, ":/?") : (size_t)(end - p));
}

static char *local_host_name(void)
{
	char name[HOST_NAME_MAX + 1] = "";

	if (gethostname(name, sizeof(name) - 1) < 0 || !name[0])
		strcpy(name, "localhost");
	return strdup(name);
}

int source_add(const char *uri, const char *label)
{
	struct source *s = calloc(1, sizeof(*s)), **n;

	if (!s)
		return -ENOMEM;
	s->uri = strdup(uri);
	s->label = label ? strdup(label) : NULL;
	n = reallocarray(sources, n_sources + 1, sizeof(*sources));
	if (!s->uri || (label && !s->label) || !n) {
		free(s->uri);
		free(s->label);
		free(s);
		return -ENOMEM;
	}
	pthread_mutex_init(&s->list_lock, NULL);
	pthread_mutex_init(&s->kick_lock, NULL);
	pthread_cond_init(&s->kick_cond, NULL);
	sources = n;
	sources[n_sources++] = s;
	return 0;
}

/*
 * Every libvirt connection is a host of its own, named by its -c NAME, else
 * by its URI's host, else after this machine. QMP sources are on this
 * machine: they join the first libvirt connection to it, or a host named
 * after this machine.
 */
static int assign_hosts(void)
{
	struct host *local = NULL;

	for (size_t k = 0; k < n_sources; k++) {
		struct source *s = sources[k];
		const char *drv = hv_uri_driver(s->uri);
		char *name;

		if (!drv) {
			hvfs_log(LOG_ERR, "%s: no driver takes this URI", s->uri);
			return -EINVAL;
		}
		if (strcmp(drv, "qmp") == 0)
			continue;
		name = s->label ? strdup(s->label) : uri_host(s->uri);
		if (name && !*name && !s->label) {
			free(name);
			name = local_host_name();
		}
		if (!name)
			return -ENOMEM;
		for (size_t i = 0; i < n_hosts; i++)
			if (strcmp(hosts[i]->name, name) == 0) {
				hvfs_log(LOG_ERR, "two connections to host %s: "
					 "name them with -c NAME=URI", name);
				free(name);
				return -EINVAL;
			}
		s->host = host_new(name);
		free(name);
		if (!s->host || !(name = uri_host(s->uri)))
			return -ENOMEM;
		if (!local && !*name)
			local = s->host;
		free(name);
	}
	for (size_t k = 0; k < n_sources; k++) {
		struct source *s = sources[k];

		if (s->host)
			continue;
		if (!local) {
			char *name = local_host_name();

			for (size_t i = 0; name && i < n_hosts; i++)
				if (strcmp(hosts[i]->name, name) == 0) {
					hvfs_log(LOG_ERR, "a connection is "
						 "named %s, like this host: "
						 "name it otherwise", name);
					free(name);
					return -EINVAL;
				}
			local = name ? host_new(name) : NULL;
			free(name);
			if (!local)
				return -ENOMEM;
		}
		s->host = local;
	}
	for (size_t k = 0; k < n_sources; k++)
		if (!sources[k]->label &&
		    !(sources[k]->label = strdup(hv_uri_driver(sources[k]->uri))))
			return -ENOMEM;
	return 0;
}

int source_open(struct source *s)
{
	struct hv_options o = { .timeout_ms = hvfs_opts.timeout_ms };
	struct hv_conn *c = NULL;
	char *err = NULL;
	int r = hv_open(s->uri, &o, &c, &err);

	if (r < 0) {
		source_set_error(s, "connect", r, err);
		free(err);
		return r;
	}
	__atomic_store_n(&s->conn, c, __ATOMIC_RELEASE);
	return 0;
}

static void *open_thread(void *arg)
{
	source_open(arg);
	return NULL;
}

int sources_open(void)
{
	pthread_t *threads;
	bool *started;
	int r = assign_hosts();

	if (r < 0)
		return r;
	/* All at once: a slow host delays the mount by one deadline at most. */
	threads = calloc(n_sources, sizeof(*threads));
	started = calloc(n_sources, sizeof(*started));
	for (size_t k = 0; threads && started && k < n_sources; k++)
		started[k] = pthread_create(&threads[k], NULL, open_thread,
					    sources[k]) == 0;
	for (size_t k = 0; k < n_sources; k++) {
		if (started && started[k])
			pthread_join(threads[k], NULL);
		else
			source_open(sources[k]);
		if (!source_conn(sources[k]) && !hosts_multi())
			r = -EIO;
	}
	free(threads);
	free(started);
	return r;
}

/* ---- the levels above the domains ---- */

struct host *host_of_level(fuse_ino_t ino)
{
	int h = top_host(ino);

	if (!hosts_multi())
		return h < 0 ? hosts[0] : NULL;
	return h >= 0 && (size_t)h < n_hosts ? hosts[h] : NULL;
}

int host_errors(struct host *h, char **ret, size_t *ret_len)
{
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);
	if (!f)
		return -ENOMEM;
	pthread_mutex_lock(&h->lock);
	for (size_t k = 0; k < n_sources; k++)
		if (sources[k]->host == h && sources[k]->error)
			fputs(sources[k]->error, f);
	pthread_mutex_unlock(&h->lock);
	if (fclose(f) != 0) {
		free(text);
		return -ENOMEM;
	}
	*ret = text;
	*ret_len = len;
	return 0;
}

void sources_close(void)
{
	for (size_t i = 0; i < n_sources; i++)
		sources[i]->conn = hv_close(sources[i]->conn);
}

void sources_free(void)
{
	sources_close();
	for (size_t i = 0; i < n_sources; i++) {
		struct source *s = sources[i];

		pthread_mutex_destroy(&s->list_lock);
		pthread_mutex_destroy(&s->kick_lock);
		pthread_cond_destroy(&s->kick_cond);
		free(s->uri);
		free(s->label);
		free(s->error);
		free(s);
	}
	free(sources);
	sources = NULL;
	n_sources = 0;
	for (size_t i = 0; i < n_hosts; i++) {
		pthread_mutex_destroy(&hosts[i]->lock);
		free(hosts[i]->name);
		free(hosts[i]);
	}
	free(hosts);
	hosts = NULL;
	n_hosts = 0;
}
