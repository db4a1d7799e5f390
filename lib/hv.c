/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The hypervisor abstraction: picks a driver for a URI and turns the driver
 * table's NULL entries into -EOPNOTSUPP, so that each driver implements only
 * what its peer can do.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hv-driver.h"

static const struct hv_driver *const drivers[] = {
	&hvd_qmp_driver,
	&hvd_libvirt_driver,
};

static const char *const state_names[HV_STATE_COUNT] = {
	[HV_STATE_NOSTATE] = "nostate",
	[HV_STATE_RUNNING] = "running",
	[HV_STATE_BLOCKED] = "blocked",
	[HV_STATE_PAUSED] = "paused",
	[HV_STATE_SHUTDOWN] = "shutdown",
	[HV_STATE_SHUTOFF] = "shutoff",
	[HV_STATE_CRASHED] = "crashed",
	[HV_STATE_PMSUSPENDED] = "pmsuspended",
};

static const char *const verb_names[HV_VERB_COUNT] = {
	[HV_VERB_START] = "start",
	[HV_VERB_POWERDOWN] = "powerdown",
	[HV_VERB_SHUTDOWN] = "shutdown",
	[HV_VERB_REBOOT] = "reboot",
	[HV_VERB_RESET] = "reset",
	[HV_VERB_PAUSE] = "pause",
	[HV_VERB_RESUME] = "resume",
	[HV_VERB_DESTROY] = "destroy",
	[HV_VERB_WAKEUP] = "wakeup",
};

const char *hv_state_name(enum hv_state s)
{
	if ((unsigned)s >= HV_STATE_COUNT)
		return NULL;
	return state_names[s];
}

const char *hv_verb_name(enum hv_verb v)
{
	if ((unsigned)v >= HV_VERB_COUNT)
		return NULL;
	return verb_names[v];
}

int hv_verb_parse(const char *buf, size_t len, enum hv_verb *ret)
{
	/* One line: strip a single trailing "\n" or "\r\n", nothing more. */
	if (len > 0 && buf[len - 1] == '\n')
		len--;
	if (len > 0 && buf[len - 1] == '\r')
		len--;
	if (len == 0 || memchr(buf, '\0', len))
		return -EINVAL;
	for (unsigned v = 0; v < HV_VERB_COUNT; v++) {
		if (strlen(verb_names[v]) == len &&
		    memcmp(verb_names[v], buf, len) == 0) {
			*ret = v;
			return 0;
		}
	}
	return -EINVAL;
}

static const struct hv_driver *driver_for(const char *uri)
{
	for (size_t i = 0; i < sizeof(drivers) / sizeof(drivers[0]); i++)
		if (drivers[i]->probe && drivers[i]->probe(uri))
			return drivers[i];
	return NULL;
}

const char *hv_uri_driver(const char *uri)
{
	const struct hv_driver *drv = driver_for(uri);

	return drv ? drv->name : NULL;
}

int hv_open(const char *uri, const struct hv_options *opts,
	    struct hv_conn **ret, char **ret_error)
{
	static const struct hv_options defaults = { .timeout_ms = 5000 };
	struct hv_options o = opts ? *opts : defaults;
	const struct hv_driver *drv = NULL;
	struct hv_conn *c;
	int r;

	if (o.timeout_ms <= 0)
		o.timeout_ms = defaults.timeout_ms;
	drv = driver_for(uri);
	if (!drv)
		return hv_error(ret_error, -EINVAL, "%s: no driver takes this URI",
				uri);

	c = calloc(1, sizeof(*c));
	if (!c || !(c->uri = strdup(uri))) {
		free(c);
		return -ENOMEM;
	}
	c->drv = drv;
	c->timeout_ms = o.timeout_ms;
	r = drv->open(uri, &o, &c->priv, ret_error);
	if (r < 0) {
		free(c->uri);
		free(c);
		return r;
	}
	*ret = c;
	return 0;
}

struct hv_conn *hv_close(struct hv_conn *c)
{
	if (!c)
		return NULL;
	if (c->drv->close)
		c->drv->close(c->priv);
	free(c->uri);
	free(c);
	return NULL;
}

const char *hv_driver_name(const struct hv_conn *c)
{
	return c->drv->name;
}

const char *hv_uri(const struct hv_conn *c)
{
	return c->uri;
}

#define UNSUPPORTED(c, what) \
	hv_error(ret_error, -EOPNOTSUPP, "%s: %s is not supported by the %s driver", \
		 (c)->uri, what, (c)->drv->name)

int hv_list_domains(struct hv_conn *c, struct hv_domain_info **ret,
		    size_t *ret_n, char **ret_error)
{
	if (!c->drv->list_domains)
		return UNSUPPORTED(c, "listing domains");
	return c->drv->list_domains(c->priv, ret, ret_n, ret_error);
}

int hv_lookup(struct hv_conn *c, const char *name, struct hv_domain_info *ret,
	      char **ret_error)
{
	if (!c->drv->lookup)
		return UNSUPPORTED(c, "lookup");
	return c->drv->lookup(c->priv, name, ret, ret_error);
}

int hv_state(struct hv_conn *c, const char *name, enum hv_state *ret,
	     char **ret_error)
{
	if (!c->drv->state)
		return UNSUPPORTED(c, "state");
	return c->drv->state(c->priv, name, ret, ret_error);
}

int hv_version(struct hv_conn *c, const char *name, char **ret,
	       char **ret_error)
{
	if (!c->drv->version)
		return UNSUPPORTED(c, "version");
	return c->drv->version(c->priv, name, ret, ret_error);
}

int hv_xml(struct hv_conn *c, const char *name, char **ret, char **ret_error)
{
	if (!c->drv->xml)
		return UNSUPPORTED(c, "xml");
	return c->drv->xml(c->priv, name, ret, ret_error);
}

unsigned hv_verbs(struct hv_conn *c, const char *name)
{
	if (!c->drv->verbs || !c->drv->control)
		return 0;
	return c->drv->verbs(c->priv, name);
}

int hv_control(struct hv_conn *c, const char *name, enum hv_verb verb,
	       char **ret_error)
{
	if ((unsigned)verb >= HV_VERB_COUNT)
		return hv_error(ret_error, -EINVAL, "unknown verb %d", verb);
	if (!(hv_verbs(c, name) & HV_VERB_BIT(verb)))
		return hv_error(ret_error, -EOPNOTSUPP,
				"%s: the %s driver cannot %s this domain", name,
				c->drv->name, verb_names[verb]);
	return c->drv->control(c->priv, name, verb, ret_error);
}

int hv_qmp(struct hv_conn *c, const char *name, const char *command_json,
	   char **ret_reply, char **ret_error)
{
	if (!c->drv->qmp)
		return UNSUPPORTED(c, "raw QMP");
	return c->drv->qmp(c->priv, name, command_json, ret_reply, ret_error);
}

int hv_subscribe(struct hv_conn *c, hv_event_fn fn, void *userdata)
{
	if (!c->drv->subscribe)
		return -EOPNOTSUPP;
	return c->drv->subscribe(c->priv, fn, userdata);
}

int hv_screenshot(struct hv_conn *c, const char *name, char **ret,
		  size_t *ret_len, char **ret_error)
{
	if (!c->drv->screenshot)
		return UNSUPPORTED(c, "screenshots");
	return c->drv->screenshot(c->priv, name, ret, ret_len, ret_error);
}

struct hv_console {
	const struct hv_driver *drv;
	void *con;
};

int hv_console_open(struct hv_conn *c, const char *name, hv_console_fn fn,
		    void *userdata, struct hv_console **ret, char **ret_error)
{
	struct hv_console *con;
	int r;

	if (!c->drv->console_open)
		return UNSUPPORTED(c, "consoles");
	con = calloc(1, sizeof(*con));
	if (!con)
		return hv_error(ret_error, -ENOMEM, "out of memory");
	con->drv = c->drv;
	r = c->drv->console_open(c->priv, name, fn, userdata, &con->con,
				 ret_error);
	if (r < 0) {
		free(con);
		return r;
	}
	*ret = con;
	return 0;
}

int hv_console_write(struct hv_console *con, const char *buf, size_t len,
		     char **ret_error)
{
	return con->drv->console_write(con->con, buf, len, ret_error);
}

struct hv_console *hv_console_close(struct hv_console *con)
{
	if (con) {
		con->drv->console_close(con->con);
		free(con);
	}
	return NULL;
}

int hv_set_memory(struct hv_conn *c, const char *name, uint64_t bytes,
		  char **ret_error)
{
	if (!c->drv->set_memory)
		return UNSUPPORTED(c, "setting the memory");
	return c->drv->set_memory(c->priv, name, bytes, ret_error);
}

int hv_stats_all(struct hv_conn *c, struct hv_stats **ret, size_t *ret_n,
		 char **ret_error)
{
	if (!c->drv->stats)
		return UNSUPPORTED(c, "reading statistics");
	return c->drv->stats(c->priv, NULL, ret, ret_n, ret_error);
}

int hv_stats(struct hv_conn *c, const char *name, struct hv_stats **ret,
	     char **ret_error)
{
	struct hv_stats *v = NULL;
	size_t n = 0;
	int r;

	if (!c->drv->stats)
		return UNSUPPORTED(c, "reading statistics");
	r = c->drv->stats(c->priv, name, &v, &n, ret_error);
	if (r < 0)
		return r;
	if (n != 1) { /* the driver's contract says it cannot happen */
		hv_stats_free(v, n);
		return hv_error(ret_error, -EPROTO, "%s: %zu records for one "
				"domain", name, n);
	}
	*ret = v;
	return 0;
}

/* ---- a domain's life ---- */

int hv_define(struct hv_conn *c, const char *xml, char **ret_name,
	      char **ret_error)
{
	if (!c->drv->define)
		return UNSUPPORTED(c, "defining domains");
	return c->drv->define(c->priv, xml, false, ret_name, ret_error);
}

int hv_create(struct hv_conn *c, const char *xml, char **ret_name,
	      char **ret_error)
{
	if (!c->drv->define)
		return UNSUPPORTED(c, "creating domains");
	return c->drv->define(c->priv, xml, true, ret_name, ret_error);
}

int hv_redefine(struct hv_conn *c, const char *name, const char *xml,
		char **ret_error)
{
	if (!c->drv->redefine)
		return UNSUPPORTED(c, "redefining domains");
	return c->drv->redefine(c->priv, name, xml, ret_error);
}

int hv_undefine(struct hv_conn *c, const char *name, char **ret_error)
{
	if (!c->drv->undefine)
		return UNSUPPORTED(c, "undefining domains");
	return c->drv->undefine(c->priv, name, ret_error);
}

int hv_autostart(struct hv_conn *c, const char *name, bool *ret,
		 char **ret_error)
{
	if (!c->drv->autostart)
		return UNSUPPORTED(c, "autostart");
	return c->drv->autostart(c->priv, name, ret, ret_error);
}

int hv_set_autostart(struct hv_conn *c, const char *name, bool on,
		     char **ret_error)
{
	if (!c->drv->set_autostart)
		return UNSUPPORTED(c, "autostart");
	return c->drv->set_autostart(c->priv, name, on, ret_error);
}

int hv_vcpus(struct hv_conn *c, const char *name, struct hv_vcpus *ret,
	     char **ret_error)
{
	if (!c->drv->vcpus)
		return UNSUPPORTED(c, "reading vCPUs");
	return c->drv->vcpus(c->priv, name, ret, ret_error);
}

int hv_set_vcpus(struct hv_conn *c, const char *name, unsigned n,
		 char **ret_error)
{
	if (!c->drv->set_vcpus)
		return UNSUPPORTED(c, "setting vCPUs");
	if (n == 0)
		return hv_error(ret_error, -EINVAL, "%s: 0 vCPUs", name);
	return c->drv->set_vcpus(c->priv, name, n, ret_error);
}

/* ---- snapshots ---- */

/* 1..HV_NAME_MAX printable bytes (UTF-8 allowed), no '/'. */
static int check_snap(const char *snap, char **ret_error)
{
	size_t n = strlen(snap);

	if (n == 0 || n > HV_NAME_MAX)
		return hv_error(ret_error, -EINVAL,
				"a snapshot name has 1 to %d bytes",
				HV_NAME_MAX);
	for (const unsigned char *p = (const unsigned char *)snap; *p; p++)
		if (*p < 0x20 || *p == 0x7f || *p == '/')
			return hv_error(ret_error, -EINVAL,
					"a snapshot name has no '/' and no "
					"control characters");
	if (!strcmp(snap, ".") || !strcmp(snap, ".."))
		return hv_error(ret_error, -EINVAL,
				"a snapshot cannot be named '%s'", snap);
	return 0;
}

int hv_snapshots(struct hv_conn *c, const char *name,
		 struct hv_snapshot **ret, size_t *ret_n, char **ret_error)
{
	if (!c->drv->snapshots)
		return UNSUPPORTED(c, "snapshots");
	return c->drv->snapshots(c->priv, name, ret, ret_n, ret_error);
}

int hv_snapshot_xml(struct hv_conn *c, const char *name, const char *snap,
		    char **ret, char **ret_error)
{
	int r = check_snap(snap, ret_error);

	if (r < 0)
		return r;
	if (!c->drv->snapshot_xml)
		return UNSUPPORTED(c, "snapshot XML");
	return c->drv->snapshot_xml(c->priv, name, snap, ret, ret_error);
}

int hv_snapshot_create(struct hv_conn *c, const char *name, const char *snap,
		       const char *description, unsigned flags,
		       char **ret_error)
{
	int r = check_snap(snap, ret_error);

	if (r < 0)
		return r;
	if (flags & ~(unsigned)HV_SNAPSHOT_DISK_ONLY)
		return hv_error(ret_error, -EINVAL,
				"unknown snapshot flags 0x%x", flags);
	if (!c->drv->snapshot_create)
		return UNSUPPORTED(c, "snapshots");
	return c->drv->snapshot_create(c->priv, name, snap, description, flags,
				       ret_error);
}

int hv_snapshot_revert(struct hv_conn *c, const char *name, const char *snap,
		       char **ret_error)
{
	int r = check_snap(snap, ret_error);

	if (r < 0)
		return r;
	if (!c->drv->snapshot_revert)
		return UNSUPPORTED(c, "snapshots");
	return c->drv->snapshot_revert(c->priv, name, snap, ret_error);
}

int hv_snapshot_delete(struct hv_conn *c, const char *name, const char *snap,
		       char **ret_error)
{
	int r = check_snap(snap, ret_error);

	if (r < 0)
		return r;
	if (!c->drv->snapshot_delete)
		return UNSUPPORTED(c, "snapshots");
	return c->drv->snapshot_delete(c->priv, name, snap, ret_error);
}

int hv_snapshot_current(struct hv_conn *c, const char *name, char **ret,
			char **ret_error)
{
	if (!c->drv->snapshot_current)
		return UNSUPPORTED(c, "a current snapshot");
	return c->drv->snapshot_current(c->priv, name, ret, ret_error);
}

int hv_snapshot_parent(struct hv_conn *c, const char *name, const char *snap,
		       char **ret, char **ret_error)
{
	int r = check_snap(snap, ret_error);

	if (r < 0)
		return r;
	if (!c->drv->snapshot_parent)
		return UNSUPPORTED(c, "snapshot parents");
	return c->drv->snapshot_parent(c->priv, name, snap, ret, ret_error);
}
