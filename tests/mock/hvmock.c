/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * hvmock: the scripted mock peers of tests/mock as a program, for the Python
 * tests.
 *
 *   hvmock qmp SOCKET SCRIPT
 *
 * plays the QMP script (mock-qmp.h) for every connection to SOCKET. It
 * prints "ready" once SOCKET listens, then a line for each connection and
 * command ("accepted N", "command NAME") and each failure ("failed: ...").
 * Lines on stdin change it while it runs: "on RULE" adds a rule, "drop" shuts
 * every connection down. At EOF on stdin (or "quit") it stops; the exit
 * status is 1 if anything failed.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mock-qmp.h"
#include "mock-util.h"

static int usage(void)
{
	fprintf(stderr, "usage: hvmock qmp SOCKET SCRIPT\n");
	return 2;
}

int main(int argc, char **argv)
{
	struct mock_qmp *m;
	char line[65536];
	char *script;
	size_t len;

	if (argc != 4 || strcmp(argv[1], "qmp"))
		return usage();
	signal(SIGPIPE, SIG_IGN);
	script = mock_read_file(argv[3], &len);
	if (!script) {
		perror(argv[3]);
		return 2;
	}
	m = mock_qmp_start(argv[2], script, MOCK_QMP_EACH);
	free(script);
	mock_qmp_set_log(m, stdout);
	printf("ready\n");
	fflush(stdout);
	while (fgets(line, sizeof(line), stdin)) {
		line[strcspn(line, "\n")] = 0;
		if (!strncmp(line, "on ", 3))
			mock_qmp_rule(m, line + 3);
		else if (!strcmp(line, "drop"))
			mock_qmp_drop(m);
		else if (!strcmp(line, "quit"))
			break;
		else if (line[0])
			fprintf(stderr, "hvmock: unknown request: %s\n", line);
	}
	return mock_qmp_finish(m) ? 0 : 1;
}
