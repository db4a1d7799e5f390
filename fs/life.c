/* SPDX-License-Identifier: GPL-2.0-or-later */
/* A domain's life through its files: xml, undefine, autostart, vcpus (see
 * life.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "life.h"
#include "tree.h"

/* The length of buf without one trailing newline. */
static size_t chomp(const char *buf, size_t len)
{
	return len > 0 && buf[len - 1] == '\n' ? len - 1 : len;
}

static bool is_word(const char *buf, size_t len, const char *word)
{
	len = chomp(buf, len);
	return len == strlen(word) && memcmp(buf, word, len) == 0;
}

int life_write_xml(struct dom *d, const char *buf, size_t len,
		   char **ret_reply, size_t *ret_reply_len, char **ret_error)
{
	char *xml;
	int r;

	(void)ret_reply;
	(void)ret_reply_len;
	if (memchr(buf, '\0', len))
		return hv_error(ret_error, -EINVAL, "the XML holds a NUL byte");
	if (!(xml = strndup(buf, len)))
		return -ENOMEM;
	r = hv_redefine(dom_conn(d), d->hv_name, xml, ret_error);
	free(xml);
	return r;
}

bool life_is_undefine(const char *buf, size_t len)
{
	return is_word(buf, len, "undefine");
}

int life_undefine(struct dom *d, char **ret_error)
{
	int r = hv_undefine(dom_conn(d), d->hv_name, ret_error);

	if (r == 0)
		tree_relist(d, hvfs_now_ms() + hvfs_opts.timeout_ms);
	return r;
}

int life_read_autostart(struct dom *d, char **ret, size_t *ret_len,
			char **ret_error)
{
	bool on = false;
	int r = hv_autostart(dom_conn(d), d->hv_name, &on, ret_error);

	if (r < 0)
		return r;
	if (!(*ret = strdup(on ? "yes\n" : "no\n")))
		return -ENOMEM;
	*ret_len = strlen(*ret);
	return 0;
}

int life_write_autostart(struct dom *d, const char *buf, size_t len,
			 char **ret_reply, size_t *ret_reply_len,
			 char **ret_error)
{
	bool on;

	(void)ret_reply;
	(void)ret_reply_len;
	if (is_word(buf, len, "yes") || is_word(buf, len, "1") ||
	    is_word(buf, len, "on"))
		on = true;
	else if (is_word(buf, len, "no") || is_word(buf, len, "0") ||
		 is_word(buf, len, "off"))
		on = false;
	else
		return hv_error(ret_error, -EINVAL, "expected yes or no");
	return hv_set_autostart(dom_conn(d), d->hv_name, on, ret_error);
}

int life_read_vcpus(struct dom *d, char **ret, size_t *ret_len,
		    char **ret_error)
{
	struct hv_vcpus v;
	int r = hv_vcpus(dom_conn(d), d->hv_name, &v, ret_error);

	if (r < 0)
		return r;
	if (asprintf(ret, "%u %u\n", v.current, v.maximum) < 0)
		return -ENOMEM;
	*ret_len = strlen(*ret);
	return 0;
}

int life_write_vcpus(struct dom *d, const char *buf, size_t len,
		     char **ret_reply, size_t *ret_reply_len,
		     char **ret_error)
{
	unsigned n = 0;

	(void)ret_reply;
	(void)ret_reply_len;
	len = chomp(buf, len);
	if (len == 0 || len > 5)
		return hv_error(ret_error, -EINVAL,
				"expected a vCPU count in decimal");
	for (size_t i = 0; i < len; i++) {
		unsigned digit = (unsigned char)buf[i] - '0';

		if (digit > 9)
			return hv_error(ret_error, -EINVAL,
					"expected a vCPU count in decimal");
		n = n * 10 + digit;
	}
	return hv_set_vcpus(dom_conn(d), d->hv_name, n, ret_error);
}
