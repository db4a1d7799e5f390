/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * The driver table behind hv.h (private to lib/). Each driver fills one
 * struct hv_driver; a NULL entry means "not supported" and hv.c turns it into
 * -EOPNOTSUPP. `priv` is the driver's own connection object, made by open()
 * and freed by close(). Every entry follows the contract of the hv.h
 * function of the same name, and may be called from many threads at once.
 */

#include "hv.h"

struct hv_driver {
	const char *name;
	/* Whether this driver takes the URI (no I/O). */
	bool (*probe)(const char *uri);
	int (*open)(const char *uri, const struct hv_options *opts,
		    void **ret_priv, char **ret_error);
	void (*close)(void *priv);
	int (*list_domains)(void *priv, struct hv_domain_info **ret,
			    size_t *ret_n, char **ret_error);
	int (*lookup)(void *priv, const char *name, struct hv_domain_info *ret,
		      char **ret_error);
	int (*state)(void *priv, const char *name, enum hv_state *ret,
		     char **ret_error);
	int (*version)(void *priv, const char *name, char **ret,
		       char **ret_error);
	int (*xml)(void *priv, const char *name, char **ret, char **ret_error);
	unsigned (*verbs)(void *priv, const char *name);
	int (*control)(void *priv, const char *name, enum hv_verb verb,
		       char **ret_error);
	int (*qmp)(void *priv, const char *name, const char *command_json,
		   char **ret_reply, char **ret_error);
	int (*subscribe)(void *priv, hv_event_fn fn, void *userdata);
	int (*screenshot)(void *priv, const char *name, char **ret,
			  size_t *ret_len, char **ret_error);
	int (*set_memory)(void *priv, const char *name, uint64_t bytes,
			  char **ret_error);
	/* hv_stats_all() when name is NULL; hv_stats() for name, with
	 * exactly one entry in *ret. */
	int (*stats)(void *priv, const char *name, struct hv_stats **ret,
		     size_t *ret_n, char **ret_error);
	/* A domain's life (hv.h). create: a transient domain. */
	int (*define)(void *priv, const char *xml, bool create,
		      char **ret_name, char **ret_error);
	int (*redefine)(void *priv, const char *name, const char *xml,
			char **ret_error);
	int (*undefine)(void *priv, const char *name, char **ret_error);
	int (*autostart)(void *priv, const char *name, bool *ret,
			 char **ret_error);
	int (*set_autostart)(void *priv, const char *name, bool on,
			     char **ret_error);
	int (*vcpus)(void *priv, const char *name, struct hv_vcpus *ret,
		     char **ret_error);
	int (*set_vcpus)(void *priv, const char *name, unsigned n,
			 char **ret_error);
	/* Snapshots (hv.h); hv.c has checked the snapshot's name. */
	int (*snapshots)(void *priv, const char *name,
			 struct hv_snapshot **ret, size_t *ret_n,
			 char **ret_error);
	int (*snapshot_xml)(void *priv, const char *name, const char *snap,
			    char **ret, char **ret_error);
	int (*snapshot_create)(void *priv, const char *name, const char *snap,
			       const char *description, unsigned flags,
			       char **ret_error);
	int (*snapshot_revert)(void *priv, const char *name, const char *snap,
			       char **ret_error);
	int (*snapshot_delete)(void *priv, const char *name, const char *snap,
			       char **ret_error);
	int (*snapshot_current)(void *priv, const char *name, char **ret,
				char **ret_error);
	int (*snapshot_parent)(void *priv, const char *name, const char *snap,
			       char **ret, char **ret_error);
	/* The guest agent (hv-agent.c builds hv_agent_info(), _exec() and
	 * _fsfreeze() on agent_command; fsfreeze is optional: without it,
	 * the agent's own commands are used). timeout_ms is > 0 and at most
	 * the connection's timeout. */
	int (*agent_command)(void *priv, const char *name,
			     const char *command_json, int timeout_ms,
			     char **ret_reply, char **ret_error);
	int (*agent_state)(void *priv, const char *name, bool *ret,
			   char **ret_error);
	int (*agent_fsfreeze)(void *priv, const char *name, bool freeze,
			      int *ret_count, char **ret_error);
	/* The serial console (hv.h): the driver's own handle in *ret. */
	int (*console_open)(void *priv, const char *name, hv_console_fn fn,
			    void *userdata, void **ret, char **ret_error);
	int (*console_write)(void *con, const char *buf, size_t len,
			     char **ret_error);
	void (*console_close)(void *con);
};

/* What hv_open() returns (hv.c; hv-agent.c reads it too). */
struct hv_conn {
	const struct hv_driver *drv;
	void *priv;
	char *uri;
	int timeout_ms; /* the connection's deadline, > 0 */
};

/* A message for hv_set_debug_log()'s function, if one is set. */
void hvd_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * A binary PPM (P6, maxval 255) as PNG (hv-rich.c): stored deflate blocks,
 * no compression. -EPROTO for what is not such a PPM, -EFBIG beyond
 * HV_SCREENSHOT_MAX. For QEMU before 7.1 and libvirt that give PPM.
 */
int ppm_to_png(const uint8_t *ppm, size_t len, char **ret, size_t *ret_len);

/*
 * Builds one domain's struct hv_stats (hv-stats.c): counters are added in
 * order, then packed into one allocation (the array, then keys and strings)
 * that hv_stats_free() releases. The first failure sticks in `err` and makes
 * later adds no-ops: -ENOMEM, or -EPROTO for a key that is empty, longer
 * than HV_STAT_KEY_MAX, or not printable ASCII without spaces.
 */
struct hvd_stats_builder {
	struct hv_stat *v; /* key and v.s hold offsets into buf until packed */
	size_t n, cap;
	char *buf;
	size_t len, bufcap;
	int err;
};

void hvd_stats_add(struct hvd_stats_builder *b, const struct hv_stat *s);
/* s with its key from a printf format; HV_STAT_ULL() and HV_STAT_STR()
 * make the value. */
void hvd_stats_addf(struct hvd_stats_builder *b, struct hv_stat s,
		   const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#define HV_STAT_ULL(x) \
	((struct hv_stat){ .type = HV_STAT_ULLONG, .v.ul = (x) })
#define HV_STAT_STR(x) \
	((struct hv_stat){ .type = HV_STAT_STRING, .v.s = (x) })
/* Packs into out->n / out->stats (name and error are the caller's) and
 * empties b; on failure returns b->err or -ENOMEM and frees b. */
int hvd_stats_pack(struct hvd_stats_builder *b, struct hv_stats *out);
void hvd_stats_builder_release(struct hvd_stats_builder *b);

extern const struct hv_driver hvd_qmp_driver;     /* hv-qmp.c */
extern const struct hv_driver hvd_libvirt_driver; /* hv-libvirt.c */
