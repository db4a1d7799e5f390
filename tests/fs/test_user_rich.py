# SPDX-License-Identifier: GPL-2.0-or-later
"""The rich tree as a user meets it (issue 12): `ls block/` of a VM that
hangs, the qmp file used as documented from bash and Python, what other
users may read with -o allow_other, and `grep -r` over a domain directory.
Every command is the one a user types."""

import errno
import glob
import json
import os
import signal
import socket
import stat
import subprocess
import time

from hvtest import errno_of, virsh, wait_for
from test_rich import FakeQemu

PREFIX = "hvt-urich-"
# A deadline of 1 s, and what a loaded 2-core machine may add to it.
TIMEOUT = 1
SLACK = 4


def ls(path):
    """`ls PATH`: (status, stdout, stderr, seconds)."""
    t = time.monotonic()
    p = subprocess.run(["ls", path], capture_output=True, text=True,
                       timeout=60)
    return p.returncode, p.stdout, p.stderr, time.monotonic() - t


def alive(m):
    """The daemon still runs and its mount still answers."""
    return m.proc.poll() is None and os.path.ismount(m.dir) and \
        errno_of(os.listdir, m.dir) == 0


def qemu_pid_of(domain):
    """The pid of the QEMU libvirt runs for domain (by its -name guest=)."""
    for p in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            with open(p, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if any(a.startswith(f"guest={domain},".encode()) for a in argv):
            return int(p.split("/")[2])
    raise AssertionError(f"no QEMU for {domain}")


def assert_block_times_out(m, name):
    rc, _, err, took = ls(m.path(name, "block"))
    assert rc != 0 and "Connection timed out" in err, (rc, err)
    assert took < TIMEOUT + SLACK, took
    assert alive(m), m.logtext()


# ---- 1. a slow VM never takes the mount down ----

def test_ls_block_of_a_stopped_qemu(qmp_dir, vms, mount):
    hung = vms("vm-hung")
    ok = vms("vm-ok")
    m = mount("--qmp-dir", qmp_dir, timeout=TIMEOUT)
    assert ls(m.path("vm-hung", "block"))[0] == 0
    os.kill(hung.proc.pid, signal.SIGSTOP)
    for _ in range(3):
        assert_block_times_out(m, "vm-hung")
        # The other VM answers meanwhile, listing and reading.
        assert ls(m.path("vm-ok", "block"))[0] == 0
        assert m.read("vm-ok", "query", "status")
        assert ls(m.path("vm-ok", "block", "nosuch"))[0] != 0
    # A lookup below block/ fails the same way.
    assert errno_of(os.stat, m.path("vm-hung", "block", "x")) == \
        errno.ETIMEDOUT
    assert alive(m), m.logtext()
    os.kill(hung.proc.pid, signal.SIGCONT)
    wait_for(lambda: ls(m.path("vm-hung", "block"))[0] == 0, timeout=10,
             what="block/ to list again")
    assert json.loads(m.read("vm-hung", "query", "status"))["running"]
    assert ok.status() == "running"


def test_ls_block_of_a_qemu_that_answers_oddly(qmp_dir, mount):
    """Another QEMU without query-block, then one that answers it with
    no list: block/ fails with what QEMU said, and the mount lives."""
    fake = FakeQemu(os.path.join(qmp_dir, "odd.qmp"))
    try:
        m = mount("--qmp-dir", qmp_dir)
        rc, _, err, _ = ls(m.path("odd", "block"))
        assert rc != 0 and "Operation not supported" in err, err
        fake.answer("query-block", {"not": "a list"})
        rc, _, err, _ = ls(m.path("odd", "block"))
        assert rc != 0 and "Protocol error" in err, err
        fake.answer("query-block", [])
        assert ls(m.path("odd", "block"))[:2] == (0, "")
        assert alive(m), m.logtext()
    finally:
        fake.close()


def test_query_names_a_peer_makes_up_are_left_out(qmp_dir, mount):
    """Command names that are no path component as they are (no QEMU has
    one) would list `.` and `..` twice, or a name with a newline."""
    odd = ["..", ".", "a\nb", ".hidden", "%41", "a/b", ""]
    fake = FakeQemu(os.path.join(qmp_dir, "odd.qmp"), {
        "query-qmp-schema": FakeQemu.SCHEMA + [
            {"name": "query-" + n, "meta-type": "command", "arg-type": "0",
             "ret-type": "1"} for n in odd]})
    try:
        m = mount("--qmp-dir", qmp_dir)
        p = subprocess.run(["ls", "-a", m.path("odd", "query")],
                           capture_output=True, text=True, timeout=30)
        assert p.stdout.split("\n") == [".", "..", "frobnicators",
                                         "optional", "status", ""]
        assert errno_of(os.stat, m.path("odd", "query", ".hidden")) == \
            errno.ENOENT
    finally:
        fake.close()


def test_ls_block_of_a_busy_monitor(qmp_dir, vms, mount):
    busy = vms("vm-busy")
    vms("vm-ok")
    # Another client holds the monitor hvfs would use: QEMU serves one
    # client at a time, so hvfs's connection waits for a greeting.
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    other.connect(busy.qmp)
    assert b"QMP" in other.recv(65536)
    try:
        m = mount("--qmp-dir", qmp_dir, timeout=TIMEOUT)
        for _ in range(2):
            assert_block_times_out(m, "vm-busy")
            assert ls(m.path("vm-ok", "block"))[0] == 0
    finally:
        other.close()
    wait_for(lambda: ls(m.path("vm-busy", "block"))[0] == 0, timeout=10,
             what="block/ once the other client left")
    assert m.read("vm-busy", "state") == "running\n"


def test_ls_block_of_a_libvirt_domain_whose_qemu_is_stopped(libvirtd,
                                                           domains, mount):
    hung = domains("hung")
    ok = domains("ok")
    m = mount("-c", libvirtd.uri, timeout=TIMEOUT)
    assert ls(m.path(hung, "block"))[0] == 0
    pid = qemu_pid_of(hung)
    os.kill(pid, signal.SIGSTOP)
    try:
        for _ in range(2):
            assert_block_times_out(m, hung)
            assert ls(m.path(ok, "block"))[0] == 0
            assert m.read(ok, "query", "status")
    finally:
        os.kill(pid, signal.SIGCONT)
    # libvirtd finishes the call it was waiting on; then all is well.
    wait_for(lambda: ls(m.path(hung, "block"))[0] == 0, timeout=30,
             what="block/ to list again")
    assert json.loads(m.read(hung, "query", "status"))["running"]
    assert alive(m)


# ---- 3. the qmp file, used as documented ----

def test_qmp_from_bash_as_documented(qmp_dir, vms, mount):
    vm = vms("vm-a")
    m = mount("--qmp-dir", qmp_dir)
    qmp = m.path("vm-a", "qmp")
    status = vm.oracle.execute("query-status")
    # The documented lines, then more transactions on the same descriptor.
    script = f"""
exec 3<>{qmp}
printf '%s\\n' '{{"execute":"query-status"}}' >&3
read -r line <&3
echo "$line"
printf '%s\\n' '{{"execute":"query-name"}}' >&3
read -r line <&3
echo "$line"
printf '%s\\n' '{{"execute":"no-such-command"}}' >&3
read -r line <&3
echo "$line"
read -r line <&3 || echo EOF
"""
    p = subprocess.run(["bash", "-c", script], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert json.loads(lines[0]) == {"return": status}
    assert json.loads(lines[1]) == {"return": vm.oracle.execute("query-name")}
    assert json.loads(lines[2])["error"]["class"] == "CommandNotFound"
    assert lines[3] == "EOF"


def test_qmp_from_python_as_documented(qmp_dir, vms, mount):
    vm = vms("vm-a")
    m = mount("--qmp-dir", qmp_dir)
    qmp = m.path("vm-a", "qmp")
    # Text mode, read() to the end, several times on one open file.
    with open(qmp, "r+") as f:
        for cmd in ("query-status", "query-name", "query-version", "stop",
                    "query-status"):
            f.write(json.dumps({"execute": cmd}) + "\n")
            f.flush()
            reply = f.read()
            assert reply.endswith("}\n") and reply.count("\n") == 1, reply
            if cmd == "stop":
                assert json.loads(reply) == {"return": {}}
            elif cmd == "query-status":
                assert "status" in json.loads(reply)["return"]
            else:
                assert json.loads(reply) == \
                    {"return": vm.oracle.execute(cmd)}
        assert json.loads(reply)["return"]["status"] == "paused"
        # readline() as a line protocol would read it.
        f.write('{"execute": "cont"}\n')
        f.flush()
        assert json.loads(f.readline()) == {"return": {}}
    assert vm.status() == "running"
    # Unbuffered: write(2), then read(2) in small pieces, then a seek back.
    fd = os.open(qmp, os.O_RDWR)
    try:
        for cmd in ("query-status", "query-name"):
            text = json.dumps({"execute": cmd})
            assert os.write(fd, text.encode()) == len(text)
            reply = b""
            while chunk := os.read(fd, 7):
                reply += chunk
            assert json.loads(reply) == {"return": vm.oracle.execute(cmd)}
        os.lseek(fd, 0, os.SEEK_SET)
        assert os.read(fd, 65536) == reply
    finally:
        os.close(fd)


# ---- 13. what other users may read with -o allow_other ----

# By what a file reveals: the domain's identity and state for everyone;
# the console, raw QMP and every query (which may tell VNC clients, paths,
# and what the next QEMU adds) for root and the ctlgroup only.
MODES = {
    "state": 0o444, "version": 0o444, "name": 0o444, "uuid": 0o444,
    "error": 0o444, "events": 0o444, "cpus": 0o444, "memory": 0o644,
    "block": 0o555, "control": 0o200, "qmp": 0o600, "query": 0o500,
    "query/status": 0o400, "screen.png": 0o400, "vcpus": 0o644,
    "snapshots": 0o755,
}
WORLD = ["state", "version", "name", "uuid", "error", "cpus", "memory",
         "vcpus"]
PRIVATE = ["query/status", "query/version", "screen.png", "qmp"]


def as_user(cmd, group="nogroup"):
    """Runs a shell line as nobody (with only `group`); returns the
    CompletedProcess."""
    return subprocess.run(
        ["setpriv", "--reuid=nobody", f"--regid={group}", "--clear-groups",
         "sh", "-c", cmd], capture_output=True, text=True, timeout=60)


def test_modes_for_other_users(qmp_dir, vms, mount):
    vm = vms("vm-a", "-machine", "pc", "-accel", "tcg", "-m", "64",
             "-device", "VGA")
    m = mount("--qmp-dir", qmp_dir, "-o", "allow_other")
    got = {f: stat.S_IMODE(os.stat(m.path("vm-a", f)).st_mode)
           for f in MODES}
    assert got == MODES
    for f in WORLD:
        p = as_user(f"cat {m.path('vm-a', f)}")
        assert p.returncode == 0, (f, p.stderr)
    assert as_user(f"cat {m.path('vm-a', 'state')}").stdout == "running\n"
    p = as_user(f"ls -l {m.path('vm-a')} {m.path('vm-a', 'block')}")
    assert p.returncode == 0 and "screen.png" in p.stdout, p.stderr
    for f in PRIVATE:
        p = as_user(f"cat {m.path('vm-a', f)}")
        assert p.returncode != 0 and "Permission denied" in p.stderr, f
    p = as_user(f"ls {m.path('vm-a', 'query')}")
    assert p.returncode != 0 and "Permission denied" in p.stderr
    # grep -r as that user reads what it may and is refused the rest,
    # without a hang and without noise in error.
    p = as_user(f"grep -r --exclude=events . {m.path('vm-a')}")
    assert "running" in p.stdout and "Permission denied" in p.stderr
    assert "screen.png" not in p.stdout
    assert m.read("vm-a", "error") == ""
    # Root reads everything.
    assert json.loads(m.read("vm-a", "query", "status"))["running"]
    with open(m.path("vm-a", "screen.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert vm.status() == "running"


SECRET_XML = """<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>32</memory>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <graphics type='vnc' autoport='yes' listen='127.0.0.1'
              passwd='{secret}'/>
  </devices>
</domain>
"""


def test_xml_hides_secrets_from_everyone(libvirtd, mount, tmp_path):
    name = PREFIX + "secret"
    secret = "s3cr3tPw"
    xml = tmp_path / "d.xml"
    xml.write_text(SECRET_XML.format(name=name, secret=secret))
    virsh("define", str(xml))
    try:
        assert secret in virsh("dumpxml", "--security-info", name)
        m = mount("-c", libvirtd.uri, "-o", "allow_other")
        assert stat.S_IMODE(os.stat(m.path(name, "xml")).st_mode) == 0o644
        p = as_user(f"cat {m.path(name, 'xml')}")
        assert p.returncode == 0 and f"<name>{name}</name>" in p.stdout, \
            p.stderr
        assert "graphics" in p.stdout and secret not in p.stdout
        assert secret not in m.read(name, "xml")     # not even for root
    finally:
        virsh("undefine", name, check=False)


# ---- 14. grep -r over a domain ----

def grep_r(path):
    """`grep -r --exclude=events . PATH` (events is a stream, which blocks
    like a pipe: how grep -r meets it is not this test's business)."""
    t = time.monotonic()
    p = subprocess.run(["grep", "-r", "--exclude=events", ".", path],
                       capture_output=True, text=True, timeout=120)
    return p, time.monotonic() - t


def assert_grep_quiet(m, name, state="running"):
    p, took = grep_r(m.path(name))
    assert p.returncode in (0, 2), p.stderr
    assert f"{m.path(name, 'state')}:{state}" in p.stdout
    assert (f"{m.path(name, 'query', 'status')}:" in p.stdout) == \
        (state == "running")
    # What this VM or host has no data for says so, and nothing else fails.
    for line in p.stderr.splitlines():
        assert line.endswith(": No data available"), line
    assert m.read(name, "error") == "", m.read(name, "error")
    assert took < 60, took
    return p


def test_grep_r_leaves_error_empty(qmp_dir, vms, mount):
    vm = vms("vm-a")
    m = mount("--qmp-dir", qmp_dir)
    p = assert_grep_quiet(m, "vm-a")
    # -machine none has no SEV, no balloon, no generation id: those files
    # are listed (QEMU has the commands) and read ENODATA.
    assert f"{m.path('vm-a', 'query', 'balloon')}: No data available" in \
        p.stderr
    assert errno_of(m.read, "vm-a", "query", "balloon") == errno.ENODATA
    # QEMU's reason is still there for whoever asks it.
    fd = os.open(m.path("vm-a", "qmp"), os.O_RDWR)
    try:
        os.write(fd, b'{"execute": "query-balloon"}')
        assert json.loads(os.read(fd, 65536))["error"]["class"] == \
            "DeviceNotActive"
    finally:
        os.close(fd)
    # A failure that is one is still recorded: a hung VM. (A new mount,
    # with a short deadline; QEMU serves one monitor client at a time.)
    assert m.umount() == 0
    m2 = mount("--qmp-dir", qmp_dir, timeout=TIMEOUT)
    assert m2.read("vm-a", "query", "status")
    os.kill(vm.proc.pid, signal.SIGSTOP)
    try:
        assert errno_of(m2.read, "vm-a", "query", "status") == \
            errno.ETIMEDOUT
        assert "read query status" in m2.read("vm-a", "error")
    finally:
        os.kill(vm.proc.pid, signal.SIGCONT)


def test_grep_r_over_a_libvirt_domain(libvirtd, domains, mount):
    name = domains("grep")
    off = domains("grep-off", start=False)
    m = mount("-c", libvirtd.uri)
    assert_grep_quiet(m, name)
    assert_grep_quiet(m, off, state="shutoff")
    assert f"{m.path(name, 'xml')}:<domain" in grep_r(m.path(name))[0].stdout


def test_read_after_write_of_a_value_file(qmp_dir, vms, mount):
    """memory and control read and write on one descriptor, as qmp does:
    a read after a write gives the contents from their start, afresh."""
    vm = vms("vm-b", "-machine", "pc", "-accel", "tcg", "-m", "64",
             "-device", "virtio-balloon-pci")
    m = mount("--qmp-dir", qmp_dir)
    with open(m.path("vm-b", "memory"), "r+") as f:
        assert f.read() == f"{64 << 20}\n"
        f.write(f"{48 << 20}\n")
        f.flush()
        # No guest moves the balloon: the value read is QEMU's, whole.
        assert f.read() == \
            f"{vm.oracle.execute('query-balloon')['actual']}\n"
    script = f"""
exec 3<>{m.path('vm-b', 'control')}
echo pause >&3
read -r verb <&3
echo "$verb"
"""
    p = subprocess.run(["bash", "-c", script], capture_output=True,
                       text=True, timeout=30)
    first = m.read("vm-b", "control").splitlines()[0]
    assert p.returncode == 0 and p.stdout == first + "\n", p.stderr
    assert vm.status() == "paused"
