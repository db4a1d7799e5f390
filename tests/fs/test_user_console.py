# SPDX-License-Identifier: GPL-2.0-or-later
"""console: the real guest's serial console (tests/guest) as a file, on a
libvirt domain of the tests' private libvirtd, driven with the tools users
use (grep, cat, tail, tail -f, echo, poll) and virsh console as the other
client. The guest boots once for the module (TCG boots are slow here)."""

import errno
import glob
import os
import select
import signal
import subprocess
import tempfile
import time

import pytest

from conftest import remove_prefixed
from guest import BOOT_TIMEOUT, READY, Guest, domain_xml
from hvtest import LIBVIRTD, Mount, virsh, wait_for

PREFIX = "hvt-ucon-"
NAME = PREFIX + "g"


class Setup:
    def __init__(self, libvirtd):
        self.lv = libvirtd
        remove_prefixed(PREFIX)
        with tempfile.NamedTemporaryFile("w", suffix=".xml") as f:
            f.write(domain_xml(NAME))
            f.flush()
            virsh("define", f.name)
        self.m = Mount("-c", libvirtd.uri)
        self.console = self.m.path(NAME, "console")

    def qemu_pid(self):
        [pidfile] = glob.glob(os.path.join(self.lv.dir, "run", "**",
                                           NAME + ".pid"), recursive=True)
        with open(pidfile) as f:
            return int(f.read())

    def type(self, line):
        """Types a line as a user does: echo LINE > console."""
        subprocess.run(["sh", "-c", 'echo "$1" > "$2"', "sh", line,
                        self.console], check=True, timeout=30)

    def close(self):
        remove_prefixed(PREFIX)
        self.m.umount()


@pytest.fixture(scope="module")
def s(libvirtd):
    st = Setup(libvirtd)
    yield st
    st.close()


def open_errno(path):
    """The errno of opening path for reading (0: it opened; closed again)."""
    try:
        os.close(os.open(path, os.O_RDONLY))
    except OSError as e:
        return e.errno
    return 0


def follow(path, want, timeout, action=None):
    """Opens path, reads what is there (O_NONBLOCK until EAGAIN), runs
    action, then waits with poll() until `want` comes; returns what came
    after the backlog."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        while True:
            try:
                if not os.read(fd, 65536):
                    break
            except BlockingIOError:
                break
        if action:
            action()
        got = b""
        end = time.monotonic() + timeout
        p = select.poll()
        p.register(fd, select.POLLIN)
        while want.encode() not in got:
            left = end - time.monotonic()
            assert left > 0, f"{want!r} not seen: {got[-500:]!r}"
            if not p.poll(left * 1000):
                continue
            try:
                got += os.read(fd, 65536)
            except BlockingIOError:
                pass
        return got.decode(errors="replace")
    finally:
        os.close(fd)


def test_grep_waits_for_the_ready_line_across_start(s):
    """A reader of a domain that is off waits; the domain starts, and grep
    finds the line the guest prints when ready, as `timeout N grep -m1`."""
    assert "console" in os.listdir(s.m.path(NAME))
    g = subprocess.Popen(["timeout", str(BOOT_TIMEOUT + 30), "grep", "-m1",
                          READY, s.console], stdout=subprocess.PIPE,
                         text=True)
    time.sleep(1)
    assert g.poll() is None  # waits: nothing printed yet
    virsh("start", NAME)
    out, _ = g.communicate(timeout=BOOT_TIMEOUT + 60)
    assert g.returncode == 0 and READY in out


def test_a_late_reader_gets_the_boot_lines(s):
    """Opened after the guest printed them: cat shows the boot (the shell's
    banner, the ready line), then waits for more like a tty; tail -n and
    head end by themselves."""
    p = subprocess.run(["timeout", "3", "cat", s.console],
                       capture_output=True, text=True)
    assert p.returncode == 124  # cat followed until timeout ended it
    assert "BusyBox" in p.stdout and READY in p.stdout
    p = subprocess.run(["tail", "-n", "3", s.console], capture_output=True,
                       text=True, timeout=10)
    assert p.returncode == 0 and READY in p.stdout, p.stderr
    assert len(p.stdout.splitlines()) <= 3
    p = subprocess.run(["head", "-c", "20", s.console],
                       capture_output=True, timeout=10)
    assert p.returncode == 0 and len(p.stdout) == 20


def test_a_typed_line_runs_in_the_guest(s):
    """echo 'echo hvfs-typed-$((6*7))' > console: the guest's shell runs it
    and its output comes back (the typed text itself says 6*7)."""
    out = follow(s.console, "hvfs-typed-42", 30,
                 lambda: s.type("echo hvfs-typed-$((6*7))"))
    assert "hvfs-typed-42" in out
    p = subprocess.run(["timeout", "10", "grep", "-m1", "hvfs-typed-42",
                        s.console], capture_output=True, text=True)
    assert p.returncode == 0


def test_tail_f_follows(s):
    t = subprocess.Popen(["tail", "-f", s.console], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        time.sleep(1.5)  # tail has read to the end and polls
        assert t.poll() is None, t.stderr.read()
        s.type("echo hvfs-tail-$((2*3))")
        fd = t.stdout.fileno()
        os.set_blocking(fd, False)
        got, end = b"", time.monotonic() + 30
        while b"hvfs-tail-6" not in got and time.monotonic() < end:
            select.select([fd], [], [], 1)
            try:
                got += os.read(fd, 65536) or b""
            except BlockingIOError:
                pass
        assert b"hvfs-tail-6" in got, got
    finally:
        t.kill()
        t.wait()


def test_nonblocking_read_at_the_end_is_eagain(s):
    fd = os.open(s.console, os.O_RDONLY | os.O_NONBLOCK)
    try:
        while os.read(fd, 65536):
            pass
    except BlockingIOError:
        pass
    else:
        raise AssertionError("a read at the end did not fail with EAGAIN")
    finally:
        os.close(fd)


def virsh_console(*flags):
    """`virsh console` in a pseudo-terminal (script), as a user runs it."""
    cmd = " ".join(["virsh", "-c", f"'{LIBVIRTD.uri}'", "console", *flags,
                    NAME])
    return subprocess.Popen(["script", "-qefc", cmd, "/dev/null"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def test_virsh_console_is_refused_while_hvfs_holds_it(s):
    """hvfs never forces: a user's virsh console is told the console is
    taken, as libvirt tells a second virsh."""
    v = virsh_console()
    out, _ = v.communicate(timeout=30)
    assert v.returncode != 0
    assert b"Active console session exists" in out, out


def test_virsh_console_force_takes_it_and_hvfs_lets_go(s):
    """virsh console --force takes the console from hvfs: hvfs does not
    take it back (opening console is EBUSY, libvirt's words in error) until
    virsh lets go."""
    v = virsh_console("--force")
    try:
        def refused():
            return open_errno(s.console) == errno.EBUSY
        wait_for(refused, timeout=30, what="console EBUSY")
        assert "Active console session exists" in s.m.read(NAME, "error")
        assert v.poll() is None  # virsh still has it
    finally:
        v.stdin.close()
        v.terminate()
        v.wait(timeout=30)
    # A tree walker (grep -r) reads what hvfs kept and does not take the
    # console back: another virsh console gets it.
    p = subprocess.run(["grep", "-r", "-c", "hvfs-guest", s.m.path(NAME)],
                       capture_output=True, text=True, timeout=120)
    assert f"{s.console}:" in p.stdout, p.stdout

    def virsh_gets_it():
        v2 = virsh_console()
        try:
            time.sleep(2)
            return v2.poll() is None  # connected: still running
        finally:
            v2.stdin.close()
            v2.terminate()
            v2.wait(timeout=30)
    wait_for(virsh_gets_it, timeout=60, what="virsh console connected")
    # virsh is gone: the console opens again (libvirtd frees it soon).
    wait_for(lambda: open_errno(s.console) == 0,
             timeout=30, what="console open again")
    out = follow(s.console, "hvfs-back-5", 30,
                 lambda: s.type("echo hvfs-back-$((2+3))"))
    assert "hvfs-back-5" in out


def test_a_stopped_qemu_delays_nobody(s):
    """kill -STOP of the guest's QEMU: its console is quiet, but reading
    what is there, non-blocking reads and the rest of the tree answer at
    once."""
    pid = s.qemu_pid()
    os.kill(pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        p = subprocess.run(["tail", "-n", "2", s.console],
                           capture_output=True, timeout=10)
        assert p.returncode == 0
        test_nonblocking_read_at_the_end_is_eagain(s)
        assert s.m.read(NAME, "state") == "running\n"
        assert time.monotonic() - t0 < 5
    finally:
        os.kill(pid, signal.SIGCONT)


def test_the_console_comes_back_after_a_restart(s):
    """destroy and start: hvfs attaches again by itself and the new boot's
    lines follow the old ones in the same file."""
    def restart():
        virsh("destroy", NAME)
        virsh("start", NAME)
    out = follow(s.console, READY, BOOT_TIMEOUT + 30, restart)
    assert READY in out
    p = subprocess.run(["timeout", "3", "cat", s.console],
                       capture_output=True, text=True)
    assert p.stdout.count(READY) >= 2


# ---- the direct QMP driver: the NAME.serial socket beside NAME.qmp ----

class DirectSetup:
    """A mount of an empty qmp-dir, where the guest then starts."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="hvfs-qmp-")
        os.chmod(self.dir, 0o755)
        self.m = Mount("qmp-dir:" + self.dir)
        self.g = None
        self.console = self.m.path("gc", "console")

    def close(self):
        if self.g:
            self.g.kill()
        self.m.umount()


@pytest.fixture(scope="module")
def d():
    st = DirectSetup()
    yield st
    st.close()


def test_direct_grep_finds_the_ready_line_of_a_booting_guest(d):
    """The guest starts after the mount: as soon as its directory is there,
    grep on its console waits for the ready line, which NAME.log (QEMU's own
    copy of the console) also has."""
    d.g = Guest(d.dir, "gc")
    wait_for(lambda: os.path.exists(d.console), timeout=30,
             what="the console file")
    p = subprocess.run(["timeout", str(BOOT_TIMEOUT + 30), "grep", "-m1",
                        READY, d.console], capture_output=True, text=True)
    assert p.returncode == 0 and READY in p.stdout
    assert READY in d.g.console_text()


def test_direct_a_typed_line_runs_in_the_guest(d):
    def typed():
        subprocess.run(["sh", "-c", 'echo "$1" > "$2"', "sh",
                        "echo hvfs-direct-$((7*6))", d.console], check=True,
                       timeout=30)
    out = follow(d.console, "hvfs-direct-42", 30, typed)
    assert "hvfs-direct-42" in out
    wait_for(lambda: "hvfs-direct-42" in d.g.console_text(), timeout=10,
             what="the oracle's copy")
    p = subprocess.run(["tail", "-n", "5", d.console], capture_output=True,
                       text=True, timeout=10)
    assert p.returncode == 0 and "hvfs-direct-42" in p.stdout


def test_direct_a_qemu_that_ends_leaves_its_output(d):
    """The QEMU ends (its socket stays): a reader keeps waiting (as for a
    libvirt domain that stops: a new QEMU may come) and is interrupted at
    will; what the guest printed stays readable; typing fails at once with
    ENODATA."""
    c = subprocess.Popen(["cat", d.console], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        d.g.kill()
        d.g = None
        time.sleep(2)
        assert c.poll() is None
        t0 = time.monotonic()
        p = subprocess.run(["tail", "-n", "5", d.console],
                           capture_output=True, text=True, timeout=10)
        assert p.returncode == 0 and "hvfs-direct-42" in p.stdout
        p = subprocess.run(["/bin/echo", "x"], stdout=open(d.console, "w"),
                           stderr=subprocess.PIPE, text=True, timeout=30)
        assert p.returncode != 0 and "No data available" in p.stderr
        assert time.monotonic() - t0 < 10
    finally:
        c.kill()
        c.wait()
