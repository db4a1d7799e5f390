/* SPDX-License-Identifier: GPL-2.0-or-later */
#pragma once

/* The file table's functions for the rich tree (rich.c, used by files.c). */

#include "hvfs.h"

/* The largest command a write to `qmp` may carry (it must fit one write). */
#define RICH_QMP_MAX (64u << 10)

int rich_write_qmp(struct dom *d, const char *buf, size_t len, char **ret_reply,
		   size_t *ret_reply_len, char **ret_error);
int rich_read_cpus(struct dom *d, char **ret, size_t *ret_len,
		   char **ret_error);
int rich_read_memory(struct dom *d, char **ret, size_t *ret_len,
		     char **ret_error);
int rich_write_memory(struct dom *d, const char *buf, size_t len,
		      char **ret_reply, size_t *ret_reply_len,
		      char **ret_error);
int rich_read_screen(struct dom *d, char **ret, size_t *ret_len,
		     char **ret_error);
int rich_read_query(struct dom *d, const char *arg, char **ret, size_t *ret_len,
		    char **ret_error);
int rich_read_block_info(struct dom *d, const char *arg, char **ret,
			 size_t *ret_len, char **ret_error);
int rich_read_block_stats(struct dom *d, const char *arg, char **ret,
			  size_t *ret_len, char **ret_error);
