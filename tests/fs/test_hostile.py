# SPDX-License-Identifier: GPL-2.0-or-later
"""Hostile and broken peers, seen through the mount: scripted QMP monitors
next to real QEMU VMs in one --qmp-dir, and a scripted libvirtd whose packet
lengths lie. Each must cost an error on its own domain within the deadline,
bounded memory in hvfs, and nothing for the rest of the mount."""

import errno
import os
import socket
import subprocess
import threading
import time

import pytest

from hvtest import HVFS, HvMock, errno_of, hvfs_sanitized, wait_for

TIMEOUT = 2        # -o timeout=SECONDS of every mount here
MARGIN = 1.5       # scheduling slack on a loaded 2-core machine
MiB = 1 << 20
QMP_LINE_MAX = 8 * MiB  # include/hvfs/qmp.h

GREETING = (b'{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, '
            b'"major": 7}, "package": ""}, "capabilities": []}}\r\n')


def rss_kib(pid, key="VmRSS"):
    """A number from /proc/PID/status: KiB for Vm*, a count for Threads."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


# ---- scripted QMP monitors (tests/mock/hvmock, mock-qmp.h) ----
# Each script is played on every connection hvfs makes.

GREETING = ('{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, '
            '"major": 7}, "package": ""}, "capabilities": []}}')
HUGE = 40 * MiB

SILENT = "hold\n"  # accepts and never says a word: no greeting
GARBAGE = (  # binary noise where the greeting should be
    "send \\x16\\x03\\x01\\x00\\xa5\\x01\\x00\\x00\\xa1 not JSON {{{ \\xff\n"
    "hold\n")
HUGE_LINE = (  # a reply of 40 MiB in one line, after a proper handshake
    "greet\ncaps\nexpect *\n"
    'sendraw {"return": "\n'
    f"flood {HUGE}\n"
    'send ", "id": $ID}\n'
    "hold\n")
WRONG_ID = (  # answers everything, always with somebody else's id
    "greet\nlabel\nexpect *\n"
    'send {"return": {}, "id": 99$ID}\\r\\n{"return": {}, "id": '
    '"not-yours"}\\r\\n{"return": {}}\n'
    "again\n")
DEEP_JSON = (  # a reply nested 100,000 deep
    "greet\ncaps\nexpect *\n"
    'sendraw {"return": \n'
    "nest 100000\n"
    'send , "id": $ID}\n'
    "hold\n")
BAD_UTF8 = (  # a greeting whose strings are not UTF-8
    "send " + GREETING.replace(
        '"package": ""',
        '"package": "\\xff\\xfe\\xc0\\xaf\\xed\\xa0\\x80"') + "\n"
    "hold\n")
BYTE_A_SECOND = (  # the greeting, one byte a second
    "slow 1000 1 " + GREETING + "\n"
    "hold\n")

BOTH = ("state", "version")
STATE = ("state",)  # the greeting was fine: version may well answer

CASES = [
    # name, script, files to read, errnos they may fail with, words the
    # error file must hold
    ("silent", SILENT, BOTH, {errno.ETIMEDOUT}, "hung"),
    ("garbage", GARBAGE, BOTH, {errno.EPROTO}, "broke the qmp protocol"),
    ("huge_line", HUGE_LINE, STATE, {errno.EPROTO}, "longer than"),
    ("wrong_id", WRONG_ID, BOTH, {errno.ETIMEDOUT}, "hung"),
    ("deep_json", DEEP_JSON, STATE, {errno.EPROTO}, "nesting too deep"),
    ("bad_utf8", BAD_UTF8, BOTH, {errno.EPROTO}, "utf-8"),
    ("byte_a_second", BYTE_A_SECOND, BOTH, {errno.ETIMEDOUT}, "hung"),
]


def timed(fn, *args):
    t = time.monotonic()
    e = errno_of(fn, *args)
    return e, time.monotonic() - t


@pytest.mark.parametrize("name,script,files,errnos,words", CASES,
                         ids=[c[0] for c in CASES])
def test_hostile_monitor(qmp_dir, vms, mount, name, script, files, errnos,
                         words):
    good = [vms("vm-good-1"), vms("vm-good-2")]
    m = mount("--qmp-dir", qmp_dir, timeout=TIMEOUT)
    pid = m.proc.pid
    for vm in good:
        assert m.read(vm.name, "state") == "running\n"
    rss0 = rss_kib(pid)
    hwm0 = rss_kib(pid, "VmHWM")
    threads0 = rss_kib(pid, "Threads")

    mock = HvMock("qmp", os.path.join(qmp_dir, "hostile.qmp"), script)
    try:
        wait_for(lambda: "hostile" in m.ls(), what="the mock in the tree")
        results = {}

        def read_hostile(i):
            results[i] = timed(m.read, "hostile", files[i % len(files)])

        readers = [threading.Thread(target=read_hostile, args=(i,))
                   for i in range(6)]
        for t in readers:
            t.start()
        # While they wait, the real VMs answer at full speed, reads (from
        # the cache) and verbs (through their own monitors) alike.
        worst = 0.0
        threads_max = threads0
        for i in range(10):
            threads_max = max(threads_max, rss_kib(pid, "Threads"))
            vm = good[i % 2]
            for f in ("state", "version", "uuid"):
                e, dt = timed(m.read, vm.name, f)
                assert e == 0
                worst = max(worst, dt)
            e, dt = timed(m.write, ("pause\n", "resume\n")[i // 2 % 2],
                          vm.name, "control")
            assert e == 0
            worst = max(worst, dt)
        assert worst < 0.5, f"a good VM took {worst:.2f} s"
        for t in readers:
            t.join(TIMEOUT * 3 + 10)
        assert len(results) == len(readers)
        for i, (e, dt) in sorted(results.items()):
            assert e in errnos, (i, errno.errorcode.get(e, e), results)
            assert dt < TIMEOUT + MARGIN, (i, dt)
        err = m.read("hostile", "error")
        assert words in err.lower(), err
        assert any(errno.errorcode[e] in err for e in errnos), err
        # Once more, alone: the same answer, as fast.
        e, dt = timed(m.read, "hostile", "state")
        assert e in errnos and dt < TIMEOUT + MARGIN, (e, dt)
        # Left alone, hvfs retries with backoff (0.25 s doubling), not in
        # a loop: a handful of connections in 3 s.
        before = mock.accepted
        time.sleep(3)
        assert mock.accepted - before <= 5, mock.accepted - before
    finally:
        mock.close()
    assert mock.accepted >= 1, mock.lines[-20:]

    # Bounded memory. A monitor's decoder holds at most QMP_LINE_MAX
    # (8 MiB) of one line, in pages of its own that it unmaps when the line
    # fails (malloc would keep them for reuse, one such block per arena).
    # So the peak may grow by QMP_LINE_MAX plus a little, and what stays
    # resident by a little: 4 MiB, where a client that buffered the 40 MiB
    # line, or kept one 8 MiB block, fails.
    grown = (rss_kib(pid) - rss0) / 1024
    peak = (rss_kib(pid, "VmHWM") - hwm0) / 1024
    # Concurrent readers may make libfuse start more workers; each costs
    # its stack and maybe a malloc arena: 1 MiB allowed for each.
    extra = max(threads_max, rss_kib(pid, "Threads")) - threads0
    why = f"({extra} more threads)"
    if not hvfs_sanitized():  # checked in the plain build
        assert peak < QMP_LINE_MAX / MiB + 4 + extra, \
            f"VmHWM grew {peak:.1f} MiB {why}"
        assert grown < 4 + extra, f"VmRSS grew {grown:.1f} MiB {why}"
    # And the mount is as it was: the mock left, the good VMs answer.
    wait_for(lambda: "hostile" not in m.ls(), what="the mock to leave")
    for vm in good:
        assert m.read(vm.name, "state") == vm.status() + "\n"
    assert m.proc.poll() is None



def test_refusing_then_wedged_monitor(qmp_dir, vms, mount):
    """A socket that refused (shutoff) and then accepts but never answers
    (a QEMU wedged at start, or not a QEMU at all) must not keep reading
    "shutoff" from the cache: reads reach it and time out."""
    vms("vm-good")
    m = mount("--qmp-dir", qmp_dir, timeout=TIMEOUT)
    path = os.path.join(qmp_dir, "late.qmp")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)  # there, but not listening: connections refused
        wait_for(lambda: "late" in m.ls(), what="the socket in the tree")
        wait_for(lambda: m.read("late", "state") == "shutoff\n",
                 what="shutoff")
        sock.listen(8)   # now it accepts, and says nothing
        wait_for(lambda: errno_of(m.read, "late", "state") ==
                 errno.ETIMEDOUT, timeout=30, what="the read to time out")
        assert m.read("vm-good", "state") == "running\n"
    finally:
        sock.close()
        os.unlink(path)

# ---- a scripted libvirtd whose packets lie (hvmock libvirt, mock-vrpc.h) ----
# It serves one running domain, and lies in every answer to one procedure.

MOCK_DOMAIN = "hvt-hostile-lv"

LIES = [
    # name, the lie in reply to PROC, file read, errnos
    # a length word of nearly 4 GiB (VRPC_LEN_MAX is 32 MiB)
    ("lie_len_huge", "get-state len 0xfffffff0", "state", {errno.EPROTO}),
    # a length word shorter than the header it precedes
    ("lie_len_short", "get-state len 12", "state", {errno.EPROTO}),
    # announces 30 MiB and sends 36 bytes of it
    ("lie_len_stall", f"get-state len {30 * MiB}", "state",
     {errno.ETIMEDOUT}),
    # a right length word around a string whose own length lies
    ("lie_xdr_string",
     "qemu-monitor-command raw \\xff\\xff\\xff\\xf01.2.3", "version",
     {errno.EPROTO}),
    # GET_STATE's reply cut short: a state and no reason
    ("lie_xdr_short", "get-state raw \\x00\\x00\\x00\\x01", "state",
     {errno.EPROTO}),
]


def mock_libvirtd(sock, lie):
    script = f"domain {MOCK_DOMAIN} running\nfault {lie}\n"
    if lie.startswith("get-state "):
        # With events, the state comes from the listing and GET_STATE is
        # never asked: without them, every read of state asks it.
        script += ("fault connect-domain-event-callback-register-any "
                   "error 3 no events here\n")
    return HvMock("libvirt", sock, script)


@pytest.mark.parametrize("name,lie,file,errnos", LIES,
                         ids=[c[0] for c in LIES])
def test_lying_libvirtd_reads_fail(tmp_path, mount, name, lie, file, errnos):
    sock = str(tmp_path / "libvirt-sock")
    mock = mock_libvirtd(sock, lie)
    try:
        m = mount("-c", f"qemu+unix:///system?socket={sock}", timeout=TIMEOUT)
        pid = m.proc.pid
        rss0 = rss_kib(pid)
        assert m.ls() == [MOCK_DOMAIN]
        for _ in range(3):
            e, dt = timed(m.read, MOCK_DOMAIN, file)
            assert e in errnos, errno.errorcode.get(e, e)
            assert dt < TIMEOUT + MARGIN, dt
        # the mock logs its fault before it replies; its line may still be
        # on its way through the pipe
        wait_for(lambda: mock.faults >= 1, what="the mock to log its fault")
        err = m.read(MOCK_DOMAIN, "error")
        assert any(errno.errorcode[e] in err for e in errnos), err
        # What does not touch the lie still works (the name is local;
        # listing reconnects if the lie cost the connection).
        assert m.read(MOCK_DOMAIN, "name") == MOCK_DOMAIN + "\n"
        assert m.ls() == [MOCK_DOMAIN]
        # A peer that breaks every connection is not reconnected in a
        # loop (vrpc holds off 0.5 s doubling to 8 s; hvfs retries with
        # backoff): a handful of connections in 3 s, not thousands.
        before = mock.accepted
        time.sleep(3)
        assert mock.accepted - before <= 5, mock.accepted - before
        # A 30 MiB announcement may be allocated, but only what arrived is
        # touched: resident memory grows by far less than the lie.
        grown = (rss_kib(pid) - rss0) / 1024
        assert hvfs_sanitized() or grown < 4, f"VmRSS grew {grown:.1f} MiB"
        assert m.proc.poll() is None
    finally:
        mock.close()


@pytest.mark.parametrize("lie", ["len 0xfffffff0", "len 12",
                                 f"len {30 * MiB}"],
                         ids=["lie_len_huge", "lie_len_short", "lie_len_stall"])
def test_lying_libvirtd_at_connect(tmp_path, lie):
    """The lie comes first (AUTH_LIST). Either the mount fails cleanly (exit
    status 1 and a message, within the deadline) or it comes up and the
    domain's files fail with an errno; never a crash or a hang."""
    sock = str(tmp_path / "libvirt-sock")
    mnt = str(tmp_path / "mnt")
    os.mkdir(mnt)
    mock = mock_libvirtd(sock, "auth-list " + lie)
    p = subprocess.Popen([HVFS, "-f", "-o", f"timeout={TIMEOUT}", "-c",
                          f"qemu+unix:///system?socket={sock}", mnt],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    try:
        t = time.monotonic()
        wait_for(lambda: p.poll() is not None or os.path.ismount(mnt),
                 timeout=TIMEOUT * 3 + 10, what="hvfs to exit or mount")
        if p.poll() is not None:
            assert time.monotonic() - t < TIMEOUT + MARGIN
            out = p.stdout.read()
            assert p.returncode == 1, (p.returncode, out)
            assert "libvirtd" in out, out
            assert not os.path.ismount(mnt)
        else:
            for name in os.listdir(mnt):
                if not name.startswith("."):
                    e, dt = timed(lambda: open(
                        os.path.join(mnt, name, "state")).read())
                    assert e != 0 and dt < TIMEOUT + MARGIN, (e, dt)
            subprocess.run(["fusermount3", "-u", mnt], check=True)
            assert p.wait(10) == 0
        # the mock logs its fault before it replies; its line may still be
        # on its way through the pipe
        wait_for(lambda: mock.faults >= 1, what="the mock to log its fault")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()
        mock.close()
