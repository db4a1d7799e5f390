/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "lvutil.h"
#include "../check.h"

int sh(char **out, const char *fmt, ...)
{
	char *cmd = NULL, *buf = NULL;
	size_t len = 0;
	va_list ap;
	FILE *f, *mem;
	int c, st;

	va_start(ap, fmt);
	if (vasprintf(&cmd, fmt, ap) < 0)
		exit(1);
	va_end(ap);
	f = popen(cmd, "r");
	REQUIRE(f);
	mem = open_memstream(&buf, &len);
	REQUIRE(mem);
	while ((c = fgetc(f)) != EOF)
		fputc(c, mem);
	fclose(mem);
	st = pclose(f);
	free(cmd);
	while (len && strchr(" \t\r\n", buf[len - 1]))
		buf[--len] = '\0';
	if (out)
		*out = buf;
	else
		free(buf);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}
