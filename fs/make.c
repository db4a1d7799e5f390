/* SPDX-License-Identifier: GPL-2.0-or-later */
/* .define and .create: domains made from XML written to a file (see
 * make.h). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#include "make.h"
#include "source.h"
#include "tree.h"

/* The last refusal per host (by index), under lock. */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char **last;
static size_t n_last;

static void set_error(struct host *h, const char *op, int err,
		      const char *msg)
{
	char stamp[32], *text;
	struct tm tm;
	time_t now = time(NULL);
	const char *ename = strerrorname_np(-err);
	size_t i = (size_t)host_index(h);

	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (asprintf(&text, "%s %s: %s (%s)\n", stamp, op,
		     msg ? msg : strerror(-err), ename ? ename : "?") < 0)
		return;
	hvfs_log(LOG_ERR, "%s%s%s: %s (%s)", hosts_multi() ? host_name(h) : "",
		 hosts_multi() ? "/" : "", op, msg ? msg : strerror(-err),
		 ename ? ename : "?");
	pthread_mutex_lock(&lock);
	if (i >= n_last) {
		char **p = realloc(last, (i + 1) * sizeof(*p));

		if (!p) {
			pthread_mutex_unlock(&lock);
			free(text);
			return;
		}
		memset(p + n_last, 0, (i + 1 - n_last) * sizeof(*p));
		last = p;
		n_last = i + 1;
	}
	free(last[i]);
	last[i] = text;
	pthread_mutex_unlock(&lock);
}

bool make_present(struct host *h)
{
	for (size_t k = 0; h && k < sources_count(); k++) {
		const char *drv = hv_uri_driver(source_at(k)->uri);

		if (source_at(k)->host == h && drv && strcmp(drv, "libvirt") == 0)
			return true;
	}
	return false;
}

int make_errors(struct host *h, char **ret, size_t *ret_len)
{
	size_t i = (size_t)host_index(h);
	char *text;

	pthread_mutex_lock(&lock);
	text = strdup(i < n_last && last[i] ? last[i] : "");
	pthread_mutex_unlock(&lock);
	if (!text)
		return -ENOMEM;
	*ret = text;
	*ret_len = strlen(text);
	return 0;
}

int make_domain(struct host *h, bool create, const char *xml, size_t len,
		char **ret_name, char **ret_error)
{
	const char *op = create ? "create" : "define";
	char *text = NULL, *err = NULL, *name = NULL;
	int r = -EOPNOTSUPP;

	if (memchr(xml, '\0', len))
		r = hv_error(&err, -EINVAL, "the XML holds a NUL byte");
	else if (!(text = strndup(xml, len)))
		return -ENOMEM;
	for (size_t k = 0; r == -EOPNOTSUPP && k < sources_count(); k++) {
		struct source *s = source_at(k);
		struct hv_conn *c = s->host == h ? source_conn(s) : NULL;

		if (!c)
			continue;
		free(err);
		err = NULL;
		r = create ? hv_create(c, text, &name, &err)
			   : hv_define(c, text, &name, &err);
	}
	free(text);
	if (r == -EOPNOTSUPP && !err)
		r = hv_error(&err, r, "no libvirt connection makes domains "
			     "here (a QMP source has no definitions)");
	if (r < 0) {
		set_error(h, op, r, err);
		if (ret_error)
			*ret_error = err;
		else
			free(err);
		return r;
	}
	hvfs_log(LOG_NOTICE, "%s%s%s %s: ok", hosts_multi() ? host_name(h) : "",
		 hosts_multi() ? "/" : "", op, name);
	/* At once in the tree, events or not. */
	tree_refresh(host_index(h), false);
	if (ret_name)
		*ret_name = name;
	else
		free(name);
	free(err);
	return 0;
}
