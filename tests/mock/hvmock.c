/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * hvmock: the scripted mock peers of tests/mock as a program, for the Python
 * tests.
 *
 *   hvmock qmp SOCKET SCRIPT
 *   hvmock qga SOCKET SCRIPT
 *   hvmock libvirt SOCKET SCRIPT
 *
 * qmp plays the QMP script (mock-qmp.h) for every connection to SOCKET;
 * qga the same as a guest agent (MOCK_QMP_AGENT);
 * libvirt is the small libvirtd of mock-vrpc.h, its domains and faults as
 * SCRIPT says. It prints "ready" once SOCKET listens (a line about a first
 * connection may come before it), and a line for each
 * connection ("accepted N"), QMP command ("command NAME"), libvirt fault
 * played ("fault PROC") and failure ("failed: ..."). Lines on stdin change
 * it while it runs: qmp: "on RULE" adds a rule; libvirt: any script line;
 * "event NAME EVENT DETAIL" sends a lifecycle event; both: "drop" shuts
 * every connection down. Each line is acknowledged with "told" once it took
 * effect. At EOF on stdin (or "quit") it stops; the exit status is 1 if
 * anything failed.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mock-qmp.h"
#include "mock-util.h"
#include "mock-vrpc.h"

static int usage(void)
{
	fprintf(stderr, "usage: hvmock qmp|qga|libvirt SOCKET SCRIPT\n");
	return 2;
}

static int libvirt(const char *path, const char *script)
{
	struct mock_libvirtd *d = mock_libvirtd_start(path, false, script,
						      stdout);
	char line[65536], name[256];
	int event, detail;

	printf("ready\n");
	fflush(stdout);
	while (fgets(line, sizeof(line), stdin)) {
		line[strcspn(line, "\n")] = 0;
		if (sscanf(line, "event %255s %d %d", name, &event,
			   &detail) == 3)
			mock_libvirtd_event(d, name, event, detail);
		else if (!strcmp(line, "drop"))
			mock_libvirtd_drop(d);
		else if (!strcmp(line, "quit"))
			break;
		else
			mock_libvirtd_line(d, line);
		printf("told\n");
		fflush(stdout);
	}
	return mock_libvirtd_finish(d) ? 0 : 1;
}

int main(int argc, char **argv)
{
	struct mock_qmp *m;
	char line[65536];
	char *script;
	size_t len;

	if (argc != 4 || (strcmp(argv[1], "qmp") && strcmp(argv[1], "qga") &&
			  strcmp(argv[1], "libvirt")))
		return usage();
	signal(SIGPIPE, SIG_IGN);
	script = mock_read_file(argv[3], &len);
	if (!script) {
		perror(argv[3]);
		return 2;
	}
	if (!strcmp(argv[1], "libvirt")) {
		int r = libvirt(argv[2], script);

		free(script);
		return r;
	}
	m = mock_qmp_start(argv[2], script, MOCK_QMP_EACH |
			   (!strcmp(argv[1], "qga") ? MOCK_QMP_AGENT : 0), stdout);
	free(script);
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
		printf("told\n");
		fflush(stdout);
	}
	return mock_qmp_finish(m) ? 0 : 1;
}
