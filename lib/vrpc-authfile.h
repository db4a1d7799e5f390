/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

/*
 * libvirt's auth.conf (private to lib/): where the SASL credentials of a
 * libvirt connection come from, never from a prompt. The format is
 * libvirt's own (a key file):
 *
 *   [credentials-NAME]          # one set of credentials
 *   authname=alice              # keys: authname, password, username, realm
 *   password=secret
 *   [auth-libvirt-HOST]         # HOST as in the URI; "localhost" for a URI
 *   credentials=NAME            # without a host; [auth-libvirt-default]
 *                               # serves any host without its own group
 * Lines starting with '#' or ';' are comments; spaces around keys and
 * values are dropped. Errors are negative errno values with a message in
 * *ret_error (may be NULL).
 */

/*
 * The file to read: path when given, else $LIBVIRT_AUTH_FILE, else
 * $XDG_CONFIG_HOME/libvirt/auth.conf (~/.config/libvirt/auth.conf), else
 * /etc/libvirt/auth.conf: the first of the last three that exists.
 * Returns a malloc'd path, or NULL when there is none (or no memory).
 */
char *vrpc_authfile_path(const char *path);

/*
 * Looks key up for host in text (a whole auth.conf, NUL-terminated): 0 and
 * *ret (malloc'd), 0 and *ret NULL when the file has no such credential,
 * -EINVAL when a host's group names credentials that the file lacks or the
 * text is not a key file, -ENOMEM. No I/O.
 */
int vrpc_authfile_lookup(const char *text, const char *host, const char *key,
			 char **ret, char **ret_error);

/* Reads file path whole (at most 1 MiB): 0 and *ret, or a negative errno. */
int vrpc_authfile_read(const char *path, char **ret, char **ret_error);
