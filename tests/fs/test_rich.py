# SPDX-License-Identifier: GPL-2.0-or-later
"""The rich tree (qmp, query/, block/, cpus, memory, screen.png) over real
QEMU processes and a real libvirtd, with the test's own QMP monitor and
virsh as oracles, and a scripted QMP peer standing in for another QEMU
version."""

import errno
import json
import os
import stat
import struct
import subprocess
import tempfile
import zlib

import pytest

from hvtest import (QEMU, HvMock, errno_of, remove_domain, sh, virsh,
                    wait_for)

KVM = os.access("/dev/kvm", os.R_OK | os.W_OK)
PC = ["-machine", "pc", "-accel", "kvm" if KVM else "tcg", "-m", "64"]
PREFIX = "hvt-rich-"
PNG_SIG = b"\x89PNG\r\n\x1a\n"


def png_size(data):
    assert data[:8] == PNG_SIG, data[:16]
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def argless_queries(schema):
    """What query/ must list: every query-* command whose arguments are all
    optional (none at all, most of the time)."""
    members = {e["name"]: e.get("members", []) for e in schema
               if e["meta-type"] == "object"}
    out = set()
    for e in schema:
        if e["meta-type"] != "command" or not e["name"].startswith("query-"):
            continue
        if all("default" in m for m in members.get(e.get("arg-type"), [])):
            out.add(e["name"][len("query-"):])
    return out


def read_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def qmp_exchange(fd, text):
    os.write(fd, text.encode())
    os.lseek(fd, 0, os.SEEK_SET)
    reply = b""
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        reply += chunk
    assert reply.endswith(b"\n")
    return json.loads(reply)


# ---- direct QMP ----

def test_qmp_file_is_a_transaction(qmp_dir, vms, mount):
    vm = vms("vm-a")
    m = mount("--qmp-dir", qmp_dir)
    assert stat.S_IMODE(os.stat(m.path("vm-a", "qmp")).st_mode) == 0o600
    a = os.open(m.path("vm-a", "qmp"), os.O_RDWR)
    b = os.open(m.path("vm-a", "qmp"), os.O_RDWR)
    try:
        assert os.read(a, 100) == b""          # nothing asked yet
        ra = qmp_exchange(a, '{"execute": "query-status"}')
        rb = qmp_exchange(b, '{"execute": "query-name"}\n')
        assert ra["return"]["status"] == vm.status()
        assert rb == {"return": vm.oracle.execute("query-name")}
        # Each open file keeps its own reply.
        os.lseek(a, 0, os.SEEK_SET)
        assert json.loads(os.read(a, 65536)) == ra
        # A command QEMU refuses: the exchange worked, error file says so.
        r = qmp_exchange(a, '{"execute": "no-such-command"}')
        assert r["error"]["class"] == "CommandNotFound"
        assert "qmp no-such-command" in m.read("vm-a", "error")
        # Malformed: EINVAL, and nothing reaches QEMU.
        for bad in ('{"execute": "stop"', '{"execute": "stop"} {}',
                    '[{"execute": "stop"}]', '{"run": "stop"}', "stop",
                    '{"execute": 1}', " "):
            assert errno_of(os.write, a, bad.encode()) == errno.EINVAL, bad
        assert errno_of(os.write, a, b'{"execute":"stop"}\0') == \
            errno.EINVAL
        big = '{"execute": "stop", "x": "' + "y" * 70000 + '"}'
        assert errno_of(os.write, a, big.encode()) in (errno.EFBIG,)
        assert vm.status() == "running"
        # A command that acts.
        assert qmp_exchange(a, '{"execute": "stop"}') == {"return": {}}
        assert vm.status() == "paused"
    finally:
        os.close(a)
        os.close(b)
    assert 'wrote qmp {"execute": "stop"}: ok' in m.logtext()
    # `echo ... > qmp` works (O_TRUNC accepted), the reply is dropped.
    sh(f"echo '{{\"execute\": \"cont\"}}' > {m.path('vm-a', 'qmp')}")
    assert vm.status() == "running"


def test_query_dir_is_what_this_qemu_offers(qmp_dir, vms, mount):
    vm = vms("vm-a", *PC)
    m = mount("--qmp-dir", qmp_dir)
    assert stat.S_ISDIR(os.stat(m.path("vm-a", "query")).st_mode)
    want = argless_queries(vm.oracle.execute("query-qmp-schema"))
    assert set(m.ls("vm-a", "query")) == want
    assert {"status", "cpus-fast", "pci", "version"} <= want
    assert json.loads(m.read("vm-a", "query", "status")) == \
        vm.oracle.execute("query-status")
    assert json.loads(m.read("vm-a", "query", "pci")) == \
        vm.oracle.execute("query-pci")
    text = m.read("vm-a", "query", "version")
    assert text.endswith("}\n") and "\n  " in text   # pretty-printed
    assert errno_of(m.read, "vm-a", "query", "no-such-query") == errno.ENOENT
    assert errno_of(m.read, "vm-a", "query", "query-status") == errno.ENOENT
    # Every file reads as JSON, or QEMU refuses it on this VM or host:
    # ENODATA, an answer, not recorded as a failure.
    refused = set()
    for name in sorted(want):
        try:
            json.loads(m.read("vm-a", "query", name))
        except OSError as e:
            assert e.errno == errno.ENODATA, (name, e)
            refused.add(name)
    assert "status" not in refused and "balloon" in refused
    assert m.read("vm-a", "error") == ""


def test_query_dir_of_a_stopped_qemu_is_empty(qmp_dir, vms, mount):
    vm = vms("vm-a")
    m = mount("--qmp-dir", qmp_dir)
    assert "status" in m.ls("vm-a", "query")
    f = open(m.path("vm-a", "query", "status"))
    vm.proc.kill()       # SIGKILL: the socket stays, nobody answers
    vm.proc.wait()
    wait_for(lambda: m.read("vm-a", "state") == "shutoff\n",
             what="shutoff")
    assert m.ls("vm-a", "query") == []
    assert m.ls("vm-a", "block") == []
    assert errno_of(f.read) == errno.ENODATA
    f.close()
    assert errno_of(m.read, "vm-a", "query", "status") == errno.ENOENT
    assert errno_of(m.read, "vm-a", "cpus") == errno.ENODATA
    assert errno_of(m.read, "vm-a", "memory") == errno.ENODATA


class FakeQemu(HvMock):
    """Some other QEMU (version 99.1.0), played by hvmock: its own schema,
    its own query commands. Answers every command it does not know with
    CommandNotFound, as QEMU does. answers: replies that replace ANSWERS'."""

    SCHEMA = [
        {"name": "query-status", "meta-type": "command", "arg-type": "0",
         "ret-type": "1"},
        {"name": "query-frobnicators", "meta-type": "command",
         "arg-type": "0", "ret-type": "1"},
        {"name": "query-optional", "meta-type": "command", "arg-type": "2",
         "ret-type": "1"},
        {"name": "query-needs-args", "meta-type": "command", "arg-type": "3",
         "ret-type": "1"},
        {"name": "stop", "meta-type": "command", "arg-type": "0",
         "ret-type": "0"},
        {"name": "0", "meta-type": "object", "members": []},
        {"name": "1", "meta-type": "builtin", "json-type": "value"},
        {"name": "2", "meta-type": "object",
         "members": [{"name": "verbose", "type": "bool", "default": None}]},
        {"name": "3", "meta-type": "object",
         "members": [{"name": "id", "type": "str"}]},
    ]
    ANSWERS = {
        "query-status": {"status": "running", "running": True},
        "query-frobnicators": [{"name": "f0", "speed": 99}],
        "query-optional": {"ok": True},
        "query-qmp-schema": SCHEMA,
    }

    # A screen of QEMU before 7.1: screendump knows no "format", gives PPM.
    # 200 x 150 RGB is over 64 KiB: two stored deflate blocks.
    W, H = 200, 150
    PIXELS = bytes((i * 7 + i // 600 * 13) % 256 for i in range(W * H * 3))

    def __init__(self, path, answers=None):
        fd, self.ppm = tempfile.mkstemp(prefix="hvt-screen-")
        os.write(fd, b"P6\n# made by a fake QEMU\n%d %d\n255\n"
                 % (self.W, self.H) + self.PIXELS)
        os.close(fd)
        rules = "".join(f"on {name} return {json.dumps(value)}\n"
                        for name, value in dict(self.ANSWERS,
                                                **(answers or {})).items())
        super().__init__("qmp", path, "greet 99.1.0\nserve\n" + rules +
                         # screendump writes the screen to "filename"; a
                         # QEMU before 7.1 has no "format" argument.
                         f"on screendump copy filename {self.ppm}\n"
                         "on screendump+format error GenericError "
                         "Parameter 'format' is unexpected\n")

    def answer(self, name, value):
        """From now on, command `name` returns value."""
        self.tell(f"on {name} return {json.dumps(value)}")

    def restart(self, schema):
        """Another QEMU behind the same socket: new schema, and every
        connection of the old one dropped."""
        self.answer("query-qmp-schema", schema)
        self.tell("drop")

    def close(self):
        try:
            super().close()
        finally:
            os.unlink(self.ppm)


def test_another_qemu_shows_its_own_queries(qmp_dir, mount):
    fake = FakeQemu(os.path.join(qmp_dir, "other.qmp"))
    try:
        m = mount("--qmp-dir", qmp_dir)
        assert m.read("other", "version") == "99.1.0\n"
        assert m.ls("other", "query") == ["frobnicators", "optional",
                                          "status"]
        assert json.loads(m.read("other", "query", "frobnicators")) == \
            [{"name": "f0", "speed": 99}]
        assert errno_of(m.read, "other", "query", "needs-args") == \
            errno.ENOENT
        # What this QEMU lacks fails as QEMU says, and is recorded.
        assert errno_of(m.read, "other", "cpus") == errno.EOPNOTSUPP
        assert "The command query-cpus-fast has not been found" in \
            m.read("other", "error")
        # The list is asked for once per QEMU process (events keep it).
        for _ in range(3):
            assert "status" in m.ls("other", "query")
        assert fake.commands("query-qmp-schema") == 1
        # A new QEMU process with other commands: the list follows it.
        fake.restart([e for e in FakeQemu.SCHEMA
                      if e["name"] != "query-frobnicators"])
        wait_for(lambda: m.ls("other", "query") == ["optional", "status"],
                 timeout=5, what="the new QEMU's queries")
        assert errno_of(m.read, "other", "query", "frobnicators") == \
            errno.ENOENT
    finally:
        fake.close()


def png_pixels(data):
    """Decodes an 8-bit RGB PNG without filters, checking every CRC."""
    assert data[:8] == PNG_SIG
    pos, idat, size = 8, b"", None
    while pos < len(data):
        n, = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        crc, = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
        assert zlib.crc32(kind + body) == crc, kind
        if kind == b"IHDR":
            size = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    assert kind == b"IEND"
    w, h, depth, color = size[:4]
    assert (depth, color) == (8, 2)
    raw = zlib.decompress(idat)
    assert len(raw) == (w * 3 + 1) * h
    rows = [raw[y * (w * 3 + 1):(y + 1) * (w * 3 + 1)] for y in range(h)]
    assert all(r[0] == 0 for r in rows)
    return w, h, b"".join(r[1:] for r in rows)


def test_old_qemu_screen_is_converted_to_png(qmp_dir, mount):
    fake = FakeQemu(os.path.join(qmp_dir, "old.qmp"))
    try:
        m = mount("--qmp-dir", qmp_dir)
        data = read_bytes(m.path("old", "screen.png"))
        assert png_pixels(data) == (FakeQemu.W, FakeQemu.H, FakeQemu.PIXELS)
        assert fake.commands("screendump") == 2
    finally:
        fake.close()


def test_cpus_and_memory(qmp_dir, vms, mount):
    vm = vms("vm-b", *PC, "-smp", "2", "-device", "virtio-balloon-pci")
    plain = vms("vm-p", *PC)
    m = mount("--qmp-dir", qmp_dir)
    want = "".join(f"{c['cpu-index']} {c['thread-id']}\n"
                   for c in vm.oracle.execute("query-cpus-fast"))
    assert m.read("vm-b", "cpus") == want and len(want.splitlines()) == 2
    assert m.read("vm-b", "memory") == \
        f"{vm.oracle.execute('query-balloon')['actual']}\n"
    assert m.read("vm-p", "memory") == f"{64 << 20}\n"
    st = os.stat(m.path("vm-b", "memory"))
    assert stat.S_IMODE(st.st_mode) == 0o644
    # A balloon takes a target; the guest (none here) would follow it.
    assert m.write(f"{32 << 20}\n", "vm-b", "memory") == 9
    assert m.write(f"{48 << 20}", "vm-b", "memory") == 8
    assert f"wrote memory {48 << 20}: ok" in m.logtext()
    for bad in (" ", "x", "-5", "12 ", "0x10", "1\n2", "0",
                "99999999999999999999999"):
        assert errno_of(m.write, bad, "vm-b", "memory") == errno.EINVAL, bad
    # Without a balloon there is nothing to set.
    assert errno_of(m.write, f"{32 << 20}", "vm-p", "memory") == \
        errno.EOPNOTSUPP
    assert "No balloon device" in m.read("vm-p", "error")
    assert plain.status() == "running"


def test_block_devices(qmp_dir, vms, mount):
    img = os.path.join(qmp_dir, "disk.raw")
    img2 = os.path.join(qmp_dir, "disk2.raw")
    for p in (img, img2):
        with open(p, "wb") as f:
            f.truncate(1 << 20)
    vm = vms("vm-d", *PC,
             "-drive", f"if=none,id=d0,file={img},format=raw",
             "-device", "virtio-blk-pci,drive=d0,id=vd0",
             "-blockdev", f"driver=file,filename={img2},node-name=n1",
             "-device", "virtio-scsi-pci,id=scsi0",
             "-device", "scsi-hd,drive=n1,id=vd1")
    m = mount("--qmp-dir", qmp_dir)
    assert m.ls("vm-d", "block") == ["d0", "vd1"]
    assert sorted(os.listdir(m.path("vm-d", "block", "d0"))) == \
        ["info", "stats"]
    blocks = vm.oracle.execute("query-block")
    by = {b["device"] or "vd1": b for b in blocks}
    for name in ("d0", "vd1"):
        assert json.loads(m.read("vm-d", "block", name, "info")) == by[name]
        stats = json.loads(m.read("vm-d", "block", name, "stats"))
        assert stats["qdev"] == by[name]["qdev"]
        assert "rd_bytes" in stats["stats"]
    assert errno_of(m.read, "vm-d", "block", "nosuch", "info") == errno.ENOENT
    # A device that leaves takes its directory; an inode kept from before
    # can only be missing, never another device.
    # (A SCSI disk leaves at once, with no guest to agree.)
    with open(m.path("vm-d", "block", "vd1", "info")) as f:
        vm.oracle.execute("device_del", id="vd1")
        wait_for(lambda: m.ls("vm-d", "block") == ["d0"], what="vd1 gone")
        assert errno_of(f.read) == errno.ENOENT
    # (the kernel may keep the entry for its 0.5 s)
    wait_for(lambda: errno_of(os.stat, m.path("vm-d", "block", "vd1")) ==
             errno.ENOENT, timeout=3, what="vd1 entry gone")


def test_screen_png(qmp_dir, vms, mount):
    vms("vm-s", *PC, "-device", "VGA")
    vms("vm-n")
    m = mount("--qmp-dir", qmp_dir)
    data = read_bytes(m.path("vm-s", "screen.png"))
    w, h = png_size(data)
    assert w >= 320 and h >= 200
    assert png_size(read_bytes(m.path("vm-s", "screen.png")))
    # No display: no data, and that is no failure.
    assert errno_of(read_bytes, m.path("vm-n", "screen.png")) == \
        errno.ENODATA
    assert m.read("vm-n", "error") == ""
    # Nothing left behind in the temporary directory.
    tmp = os.environ.get("TMPDIR") or "/tmp"
    assert not [n for n in os.listdir(tmp) if n.startswith("hvfs-screen-")]


def as_nobody(cmd):
    return subprocess.run(["runuser", "-u", "nobody", "--", "sh", "-c", cmd],
                          capture_output=True, text=True)


def test_permissions(qmp_dir, vms, mount):
    vm = vms("vm-a", *PC, "-device", "virtio-balloon-pci")
    m = mount("--qmp-dir", qmp_dir, "-o", "allow_other")
    p = as_nobody(f"cat {m.path('vm-a', 'qmp')}")
    assert p.returncode != 0 and "Permission denied" in p.stderr
    p = as_nobody(f"echo '{{\"execute\":\"stop\"}}' > {m.path('vm-a', 'qmp')}")
    assert p.returncode != 0 and "Permission denied" in p.stderr
    p = as_nobody(f"echo 33554432 > {m.path('vm-a', 'memory')}")
    assert p.returncode != 0 and "Permission denied" in p.stderr
    assert vm.status() == "running"
    for f in ("memory", "cpus", "block"):
        p = as_nobody(f"ls {m.path('vm-a', f)} && cat {m.path('vm-a', f)}"
                      if f != "block" else f"ls {m.path('vm-a', f)}")
        assert p.returncode == 0, (f, p.stderr)
    # What a query or the console reveals is root's (test_user_rich.py).
    for f in ("query/status", "screen.png"):
        p = as_nobody(f"cat {m.path('vm-a', f)}")
        assert p.returncode != 0 and "Permission denied" in p.stderr, f


def test_ctlgroup_may_use_qmp_and_memory(qmp_dir, vms, mount):
    vm = vms("vm-a", *PC, "-device", "virtio-balloon-pci", "-device", "VGA")
    group = "hvfs-test-rich"
    subprocess.run(["groupadd", "-f", group], check=True)
    try:
        m = mount("--qmp-dir", qmp_dir, "-o", f"allow_other,ctlgroup={group}")
        gid = int(subprocess.run(["getent", "group", group], check=True,
                                 capture_output=True, text=True)
                  .stdout.split(":")[2])
        # What one may write or only root may read is the group's too
        # (see test_user_rich.py for the modes without a ctlgroup).
        for f, mode, g in (("qmp", 0o660, gid), ("memory", 0o664, gid),
                           ("screen.png", 0o440, gid), ("query", 0o550, gid),
                           ("query/status", 0o440, gid), ("state", 0o444, 0),
                           ("block", 0o555, 0)):
            st = os.stat(m.path("vm-a", f))
            assert (stat.S_IMODE(st.st_mode), st.st_gid) == (mode, g), f
        p = subprocess.run(
            ["setpriv", "--reuid=nobody", f"--regid={group}",
             "--clear-groups", "sh", "-c",
             f"ls {m.path('vm-a', 'query')} >/dev/null"
             f" && cat {m.path('vm-a', 'query', 'status')}"
             f" && head -c 4 {m.path('vm-a', 'screen.png')} | od -c"
             f" && echo '{{\"execute\": \"stop\"}}' > {m.path('vm-a', 'qmp')}"
             f" && echo 40000000 > {m.path('vm-a', 'memory')}"],
            capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        assert '"running": true' in p.stdout and "P   N   G" in p.stdout
        assert vm.status() == "paused"
        assert "wrote memory 40000000: ok" in m.logtext()
    finally:
        subprocess.run(["groupdel", group])


# ---- libvirt ----

LIBVIRT_XML = """<domain type='{type}'>
  <name>{name}</name>
  <memory unit='MiB'>64</memory>
  <vcpu>2</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices>
    <emulator>{qemu}</emulator>
    {devices}
  </devices>
</domain>
"""

FULL = """<disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='{img}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <graphics type='vnc' autoport='yes' listen='127.0.0.1'/>
    <video><model type='vga'/></video>
    <memballoon model='virtio'/>"""
BARE = "<memballoon model='none'/>"


@pytest.fixture
def libvirt_domains(libvirtd):
    for name in virsh("list", "--all", "--name").split():
        if name.startswith(PREFIX):
            remove_domain(name)
    made = []
    tmp = tempfile.mkdtemp(prefix="hvfs-rich-")

    def make(name, devices):
        name = PREFIX + name
        img = os.path.join(tmp, name + ".raw")
        with open(img, "wb") as f:
            f.truncate(1 << 20)
        xml = LIBVIRT_XML.format(type="kvm" if KVM else "qemu", name=name,
                                 qemu=QEMU, devices=devices.format(img=img))
        with tempfile.NamedTemporaryFile("w", suffix=".xml") as f:
            f.write(xml)
            f.flush()
            virsh("define", f.name)
        made.append(name)
        virsh("start", name)
        return name
    yield make
    for name in made:
        remove_domain(name)
    subprocess.run(["rm", "-rf", tmp])


def monitor(name, cmd, **args):
    msg = {"execute": cmd}
    if args:
        msg["arguments"] = args
    return json.loads(virsh("qemu-monitor-command", name,
                            json.dumps(msg)))["return"]


def test_libvirt_rich_tree(libvirtd, libvirt_domains, mount):
    full = libvirt_domains("full", FULL)
    bare = libvirt_domains("bare", BARE)
    m = mount("-c", libvirtd.uri)

    # qmp, through libvirt's monitor passthrough
    fd = os.open(m.path(full, "qmp"), os.O_RDWR)
    try:
        r = qmp_exchange(fd, '{"execute": "query-name"}')
        assert r == {"return": monitor(full, "query-name")}
        assert errno_of(os.write, fd, b'{"execute":') == errno.EINVAL
        r = qmp_exchange(fd, '{"execute": "no-such-command"}')
        assert r["error"]["class"] == "CommandNotFound"
    finally:
        os.close(fd)

    # query/
    want = argless_queries(monitor(full, "query-qmp-schema"))
    assert set(m.ls(full, "query")) == want
    assert json.loads(m.read(full, "query", "status")) == \
        monitor(full, "query-status")

    # cpus, memory
    assert m.read(full, "cpus") == "".join(
        f"{c['cpu-index']} {c['thread-id']}\n"
        for c in monitor(full, "query-cpus-fast"))
    stats = dict(line.split() for line in
                 virsh("dommemstat", full).splitlines())
    assert m.read(full, "memory") == f"{int(stats['actual']) * 1024}\n"
    assert m.read(bare, "memory") == f"{64 << 20}\n"
    assert m.write(f"{48 << 20}", full, "memory") > 0
    assert errno_of(m.write, f"{48 << 20}", bare, "memory") == \
        errno.EOPNOTSUPP

    # block/
    blocks = monitor(full, "query-block")
    disk = [b for b in blocks if "virtio-disk0" in b.get("qdev", "")]
    assert len(disk) == 1
    assert "virtio-disk0" in m.ls(full, "block")
    assert json.loads(m.read(full, "block", "virtio-disk0", "info")) == \
        disk[0]
    assert "stats" in json.loads(
        m.read(full, "block", "virtio-disk0", "stats"))
    assert m.ls(bare, "block") == []

    # screen.png: libvirt's screenshot, a stream
    with tempfile.TemporaryDirectory() as t:
        ref = os.path.join(t, "ref.png")
        virsh("screenshot", full, ref)
        want_size = png_size(read_bytes(ref))
    for _ in range(3):
        assert png_size(read_bytes(m.path(full, "screen.png"))) == want_size
    assert errno_of(read_bytes, m.path(bare, "screen.png")) == errno.ENODATA
    # The connection still serves calls after the streams.
    assert m.read(full, "state") == "running\n"
    assert m.read(full, "query", "status")
