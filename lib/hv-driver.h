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
};

/* A message for hv_set_debug_log()'s function, if one is set. */
void hvd_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * A binary PPM (P6, maxval 255) as PNG (hv-rich.c): stored deflate blocks,
 * no compression. -EPROTO for what is not such a PPM, -EFBIG beyond
 * HV_SCREENSHOT_MAX. For QEMU before 7.1 and libvirt that give PPM.
 */
int ppm_to_png(const uint8_t *ppm, size_t len, char **ret, size_t *ret_len);

extern const struct hv_driver hvd_qmp_driver;     /* hv-qmp.c */
extern const struct hv_driver hvd_libvirt_driver; /* hv-libvirt.c */
