# SPDX-License-Identifier: GPL-2.0-or-later
"""Hostile and broken peers, seen through the mount: scripted QMP monitors
next to real QEMU VMs in one --qmp-dir, and a scripted libvirtd whose packet
lengths lie. Each must cost an error on its own domain within the deadline,
bounded memory in hvfs, and nothing for the rest of the mount."""

import errno
import json
import os
import socket
import struct
import subprocess
import threading
import time

import pytest

from hvtest import HVFS, Mount, errno_of, hvfs_sanitized, wait_for

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


# ---- scripted QMP monitors ----

class Peer:
    """One accepted connection, as a script sees it."""

    def __init__(self, conn, stop):
        self.conn = conn
        self.stop = stop
        self.buf = b""

    def send(self, data):
        self.conn.sendall(data)

    def closed(self, wait=0.2):
        """Waits up to `wait` s; true once hvfs hung up or the test ends."""
        if self.stop.is_set():
            return True
        self.conn.settimeout(wait)
        try:
            chunk = self.conn.recv(65536)
        except socket.timeout:
            return self.stop.is_set()
        except OSError:
            return True
        if not chunk:
            return True
        self.buf += chunk
        return False

    def command(self):
        """The next command hvfs sent, or None once it hung up."""
        while b"\n" not in self.buf:
            if self.closed():
                return None
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def hold(self):
        """Keeps the connection open, silent, until hvfs hangs up."""
        while not self.closed():
            pass

    def reply(self, cmd, value=None, id_=None):
        msg = {"return": {} if value is None else value,
               "id": cmd.get("id") if id_ is None else id_}
        self.send(json.dumps(msg).encode() + b"\r\n")

    def handshake(self):
        self.send(GREETING)
        cmd = self.command()
        if cmd is None:
            return False
        assert cmd["execute"] == "qmp_capabilities", cmd
        self.reply(cmd)
        return True


class MockMonitor:
    """A UNIX socket at `path` that runs script(peer) for each connection."""

    def __init__(self, path, script):
        self.path = path
        self.script = script
        self.stop = threading.Event()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # Listening before it appears, as QEMU's socket does in practice:
        # a socket that refuses reads "shutoff", and that is not the test.
        tmp = path + ".tmp"
        self.sock.bind(tmp)
        self.sock.listen(16)
        os.rename(tmp, path)
        self.sock.settimeout(0.1)
        self.conns = []
        self.threads = []
        self.accepted = 0
        self.errors = []
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    def _accept(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted += 1
            self.conns.append(conn)
            t = threading.Thread(target=self._run, args=(conn,), daemon=True)
            self.threads.append(t)
            t.start()

    def _run(self, conn):
        try:
            self.script(Peer(conn, self.stop))
        except (BrokenPipeError, ConnectionResetError):
            pass  # hvfs hung up on us: what a hostile peer earns
        except Exception as e:  # a bug in the script: fail the test
            self.errors.append(repr(e))
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def close(self):
        self.stop.set()
        self.acceptor.join(5)
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self.threads:
            t.join(5)
        self.sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        assert not self.errors, self.errors


def silent(peer):
    """Accepts and never says a word: no greeting."""
    peer.hold()


def garbage(peer):
    """Binary noise where the greeting should be."""
    peer.send(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1 not JSON {{{ \xff\r\n")
    peer.hold()


HUGE = 40 * MiB


def huge_line(peer):
    """A reply of 40 MiB in one line, after a proper handshake."""
    if not peer.handshake():
        return
    cmd = peer.command()
    if cmd is None:
        return
    peer.send(b'{"return": "')
    chunk = b"x" * MiB
    for _ in range(HUGE // MiB):
        peer.send(chunk)  # BrokenPipe once hvfs gives up on us
    peer.send(b'", "id": %d}\r\n' % cmd["id"])
    peer.hold()


def wrong_id(peer):
    """Answers everything, always with somebody else's id."""
    peer.send(GREETING)
    while True:
        cmd = peer.command()
        if cmd is None:
            return
        wrong = cmd["id"] + 1000 if isinstance(cmd.get("id"), int) else 7
        peer.reply(cmd, id_=wrong)
        peer.send(b'{"return": {}, "id": "not-yours"}\r\n')
        peer.send(b'{"return": {}}\r\n')


def deep_json(peer):
    """A reply nested 100,000 deep."""
    if not peer.handshake():
        return
    cmd = peer.command()
    if cmd is None:
        return
    peer.send(b'{"return": ' + b"[" * 100000 + b"]" * 100000 +
              b', "id": %d}\r\n' % cmd["id"])
    peer.hold()


def bad_utf8(peer):
    """A greeting whose strings are not UTF-8."""
    peer.send(GREETING.replace(b'"package": ""',
                               b'"package": "\xff\xfe\xc0\xaf\xed\xa0\x80"'))
    peer.hold()


def byte_a_second(peer):
    """The greeting, one byte a second."""
    for b in GREETING:
        peer.send(bytes([b]))
        if peer.closed(wait=1.0):
            return
    peer.hold()


BOTH = ("state", "version")
STATE = ("state",)  # the greeting was fine: version may well answer

CASES = [
    # script, files to read, errnos they may fail with, words the error
    # file must hold
    (silent, BOTH, {errno.ETIMEDOUT}, "hung"),
    (garbage, BOTH, {errno.EPROTO}, "broke the qmp protocol"),
    (huge_line, STATE, {errno.EPROTO}, "longer than"),
    (wrong_id, BOTH, {errno.ETIMEDOUT}, "hung"),
    (deep_json, STATE, {errno.EPROTO}, "nesting too deep"),
    (bad_utf8, BOTH, {errno.EPROTO}, "utf-8"),
    (byte_a_second, BOTH, {errno.ETIMEDOUT}, "hung"),
]


def timed(fn, *args):
    t = time.monotonic()
    e = errno_of(fn, *args)
    return e, time.monotonic() - t


@pytest.mark.parametrize("script,files,errnos,words", CASES,
                         ids=[c[0].__name__ for c in CASES])
def test_hostile_monitor(qmp_dir, vms, mount, script, files, errnos, words):
    good = [vms("vm-good-1"), vms("vm-good-2")]
    m = mount("--qmp-dir", qmp_dir, timeout=TIMEOUT)
    pid = m.proc.pid
    for vm in good:
        assert m.read(vm.name, "state") == "running\n"
    rss0 = rss_kib(pid)
    hwm0 = rss_kib(pid, "VmHWM")
    threads0 = rss_kib(pid, "Threads")

    mock = MockMonitor(os.path.join(qmp_dir, "hostile.qmp"), script)
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
    assert mock.accepted >= 1

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

# ---- a scripted libvirtd whose packets lie ----

REMOTE, QEMU_PROG = 0x20008086, 0x20008087
CALL, REPLY = 0, 1
OK = 0
MOCK_DOMAIN = "hvt-hostile-lv"
MOCK_UUID = bytes(range(1, 17))


def xdr_string(s):
    b = s.encode()
    return struct.pack(">I", len(b)) + b + b"\0" * (-len(b) % 4)


def xdr_domain(name, uuid, id_):
    return xdr_string(name) + uuid + struct.pack(">i", id_)


def packet(prog, proc, type_, serial, status, payload=b"", length=None):
    n = 28 + len(payload) if length is None else length
    return struct.pack(">IIIiiIi", n, prog, 1, proc, type_, serial,
                       status) + payload


class MockLibvirtd:
    """Speaks enough of libvirt's protocol for hvfs to mount one running
    domain, then lies in its answer to `lie_proc` with `lie(serial)`."""

    def __init__(self, path, lie_proc, lie):
        self.path = path
        self.lie_proc = lie_proc
        self.lie = lie
        self.lies = 0
        self.mon = MockMonitor(path, self.serve)

    def serve(self, peer):
        while True:
            hdr = self.recv(peer, 4)
            if hdr is None:
                return
            (n,) = struct.unpack(">I", hdr)
            body = self.recv(peer, n - 4)
            if body is None:
                return
            prog, _, proc, _, serial, _ = struct.unpack(">IIiiIi", body[:24])
            args = body[24:]
            if (prog, proc) == self.lie_proc:
                self.lies += 1
                peer.send(self.lie(prog, proc, serial))
                continue
            payload = self.answer(prog, proc, args)
            peer.send(packet(prog, proc, REPLY, serial, OK, payload))

    @staticmethod
    def recv(peer, n):
        while len(peer.buf) < n:
            if peer.closed():
                return None
        data, peer.buf = peer.buf[:n], peer.buf[n:]
        return data

    @staticmethod
    def answer(prog, proc, args):
        dom = xdr_domain(MOCK_DOMAIN, MOCK_UUID, 1)
        if prog == QEMU_PROG and proc == 4:    # monitor event register
            return struct.pack(">i", 2)
        if prog == QEMU_PROG and proc == 1:    # monitor command
            return xdr_string('{"return": {"qemu": {"major": 7, "minor": '
                              '2, "micro": 0}, "package": ""}, "id": 1}')
        if proc == 66:                         # AUTH_LIST: none needed
            return struct.pack(">Ii", 1, 0)
        if proc == 60:                         # SUPPORTS_FEATURE: no
            return struct.pack(">i", 0)
        if proc in (1, 2):                     # CONNECT_OPEN, _CLOSE
            return b""
        if proc == 316:                        # lifecycle register
            return struct.pack(">i", 1)
        if proc == 273:                        # LIST_ALL_DOMAINS
            _, flags = struct.unpack(">iI", args[:8])
            doms = [] if flags & 32 else [dom]  # running, not paused
            return (struct.pack(">I", len(doms)) + b"".join(doms) +
                    struct.pack(">I", len(doms)))
        if proc == 23:                         # LOOKUP_BY_NAME
            return dom
        if proc == 212:                        # GET_STATE: running
            return struct.pack(">ii", 1, 1)
        raise AssertionError(f"mock libvirtd: unexpected call {prog:x}/{proc}")

    def close(self):
        self.mon.close()


def lie_len_huge(prog, proc, serial):
    """A length word of nearly 4 GiB (VRPC_LEN_MAX is 32 MiB)."""
    return packet(prog, proc, REPLY, serial, OK, struct.pack(">ii", 1, 1),
                  length=0xfffffff0)


def lie_len_short(prog, proc, serial):
    """A length word shorter than the header it precedes."""
    return packet(prog, proc, REPLY, serial, OK, length=12)


def lie_len_stall(prog, proc, serial):
    """Announces 30 MiB and sends 36 bytes of it."""
    return packet(prog, proc, REPLY, serial, OK, struct.pack(">ii", 1, 1),
                  length=30 * MiB)


def lie_xdr_string(prog, proc, serial):
    """A right length word around a string whose own length lies."""
    return packet(prog, proc, REPLY, serial, OK,
                  struct.pack(">I", 0xfffffff0) + b"1.2.3")


def lie_xdr_short(prog, proc, serial):
    """GET_STATE's reply cut short: a state and no reason."""
    return packet(prog, proc, REPLY, serial, OK, struct.pack(">i", 1))


LIES = [
    # lie, in reply to, file read, errnos, memory bound note
    (lie_len_huge, (REMOTE, 212), "state", {errno.EPROTO}),
    (lie_len_short, (REMOTE, 212), "state", {errno.EPROTO}),
    (lie_len_stall, (REMOTE, 212), "state", {errno.ETIMEDOUT}),
    (lie_xdr_string, (QEMU_PROG, 1), "version", {errno.EPROTO}),
    (lie_xdr_short, (REMOTE, 212), "state", {errno.EPROTO}),
]


@pytest.mark.parametrize("lie,proc,file,errnos", LIES,
                         ids=[c[0].__name__ for c in LIES])
def test_lying_libvirtd_reads_fail(tmp_path, mount, lie, proc, file, errnos):
    sock = str(tmp_path / "libvirt-sock")
    mock = MockLibvirtd(sock, proc, lie)
    try:
        m = mount("-c", f"qemu+unix:///system?socket={sock}", timeout=TIMEOUT)
        pid = m.proc.pid
        rss0 = rss_kib(pid)
        assert m.ls() == [MOCK_DOMAIN]
        for _ in range(3):
            e, dt = timed(m.read, MOCK_DOMAIN, file)
            assert e in errnos, errno.errorcode.get(e, e)
            assert dt < TIMEOUT + MARGIN, dt
        assert mock.lies >= 1
        err = m.read(MOCK_DOMAIN, "error")
        assert any(errno.errorcode[e] in err for e in errnos), err
        # What does not touch the lie still works (the name is local;
        # listing reconnects if the lie cost the connection).
        assert m.read(MOCK_DOMAIN, "name") == MOCK_DOMAIN + "\n"
        assert m.ls() == [MOCK_DOMAIN]
        # A peer that breaks every connection is not reconnected in a
        # loop (vrpc holds off 0.5 s doubling to 8 s; hvfs retries with
        # backoff): a handful of connections in 3 s, not thousands.
        before = mock.mon.accepted
        time.sleep(3)
        assert mock.mon.accepted - before <= 5, mock.mon.accepted - before
        # A 30 MiB announcement may be allocated, but only what arrived is
        # touched: resident memory grows by far less than the lie.
        grown = (rss_kib(pid) - rss0) / 1024
        assert hvfs_sanitized() or grown < 4, f"VmRSS grew {grown:.1f} MiB"
        assert m.proc.poll() is None
    finally:
        mock.close()


@pytest.mark.parametrize("lie", [lie_len_huge, lie_len_short, lie_len_stall],
                         ids=lambda f: f.__name__)
def test_lying_libvirtd_at_connect(tmp_path, lie):
    """The lie comes first (AUTH_LIST). Either the mount fails cleanly (exit
    status 1 and a message, within the deadline) or it comes up and the
    domain's files fail with an errno; never a crash or a hang."""
    sock = str(tmp_path / "libvirt-sock")
    mnt = str(tmp_path / "mnt")
    os.mkdir(mnt)
    mock = MockLibvirtd(sock, (REMOTE, 66), lie)
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
        assert mock.lies >= 1
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stdout.close()
        mock.close()
