/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * How lib/ reports: hv.h's error setter (the socket layer's, under its
 * public name) and the debug log. A leaf: the drivers and hv.c call it, it
 * calls none of them.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "hv-driver.h"
#include "sock.h"

int hv_error(char **ret_error, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	sock_verror(ret_error, err, fmt, ap);
	va_end(ap);
	return err;
}

static hv_log_fn debug_log;

void hv_set_debug_log(hv_log_fn fn)
{
	__atomic_store_n(&debug_log, fn, __ATOMIC_RELEASE);
}

void hvd_debug(const char *fmt, ...)
{
	hv_log_fn fn = __atomic_load_n(&debug_log, __ATOMIC_ACQUIRE);
	va_list ap;
	char *msg;

	if (!fn)
		return;
	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) >= 0) {
		fn(msg);
		free(msg);
	}
	va_end(ap);
}
