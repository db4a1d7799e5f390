# SPDX-License-Identifier: GPL-2.0-or-later
"""Snapshots through files (issue 16), as an operator takes, rolls back and
drops them with mkdir, cat and echo: on the private libvirtd with virsh as
the oracle, and on a real QEMU with a qcow2 disk (direct QMP) with QEMU's
own monitor and qemu-img as the oracle."""

import errno
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time

import pytest

from hvtest import QEMU, errno_of, read_events, sh, virsh, wait_for

PREFIX = "hvt-snap-"


def remove_with_snapshots(name):
    virsh("destroy", name, check=False)
    virsh("undefine", "--snapshots-metadata", name, check=False)


@pytest.fixture
def images():
    d = tempfile.mkdtemp(prefix="hvfs-snap-")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def snapdom(libvirtd, images):
    """snapdom(name, fmt="qcow2", start=True, mib=32): a small libvirt
    domain with one disk of that format; removed with its snapshots at the
    end."""
    made = []
    kvm = os.access("/dev/kvm", os.R_OK | os.W_OK)

    def make(name, fmt="qcow2", start=True, mib=32):
        name = PREFIX + name
        img = os.path.join(images, f"{name}.{fmt}")
        sh(f"qemu-img create -q -f {fmt} {img} 16M")
        xml = f"""<domain type='{"kvm" if kvm else "qemu"}'>
  <name>{name}</name>
  <memory unit='MiB'>{mib}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices><emulator>{QEMU}</emulator>
    <disk type='file' device='disk'><driver name='qemu' type='{fmt}'/>
      <source file='{img}'/><target dev='vda' bus='virtio'/></disk>
  </devices>
</domain>
"""
        path = os.path.join(images, f"{name}.xml")
        with open(path, "w") as f:
            f.write(xml)
        remove_with_snapshots(name)
        virsh("define", path)
        made.append(name)
        if start:
            virsh("start", name)
        return name
    yield make
    for name in made:
        remove_with_snapshots(name)


def snapshot_names(dom):
    return virsh("snapshot-list", "--name", dom).split()


def virsh_current(dom):
    """virsh snapshot-current --name, "" when there is none."""
    return virsh("snapshot-current", "--name", dom, check=False)


def tree_state(m, dom):
    """What a read-only walk could have changed: the snapshots, the current
    one, the domain's state."""
    return (sorted(snapshot_names(dom)), virsh_current(dom),
            virsh("domstate", dom))


def test_libvirt_snapshots(mount, libvirtd, snapdom):
    dom = snapdom("a")
    m = mount("-c", libvirtd.uri, timeout=30)
    snaps = m.path(dom, "snapshots")
    assert "snapshots" in m.ls(dom)
    assert m.ls(dom, "snapshots") == []
    assert m.read(dom, "snapshots", ".current") == ""

    # Taken while paused; mkdir returns when the snapshot exists.
    m.write("pause\n", dom, "control")
    wait_for(lambda: virsh("domstate", dom) == "paused", what="paused")
    os.mkdir(os.path.join(snaps, "before-upgrade"))
    assert snapshot_names(dom) == ["before-upgrade"]
    assert virsh_current(dom) == "before-upgrade"
    assert m.ls(dom, "snapshots") == ["before-upgrade"]
    assert m.read(dom, "snapshots", ".current") == "before-upgrade\n"
    assert sorted(os.listdir(os.path.join(snaps, "before-upgrade"))) == [
        "control", "created", "parent", "state", "xml"]
    assert m.read(dom, "snapshots", "before-upgrade", "state") == "paused\n"
    assert m.read(dom, "snapshots", "before-upgrade", "parent") == ""
    dumped = virsh("snapshot-dumpxml", dom, "before-upgrade")
    assert m.read(dom, "snapshots", "before-upgrade", "xml").strip() == dumped
    created = int(re.search(r"<creationTime>(\d+)</creationTime>",
                            dumped).group(1))
    assert m.read(dom, "snapshots", "before-upgrade",
                  "created") == f"{created}\n"
    assert abs(created - time.time()) < 600
    assert m.read(dom, "snapshots", "before-upgrade",
                  "control") == "revert\ndelete\n"

    # A child, taken while running.
    m.write("resume\n", dom, "control")
    wait_for(lambda: virsh("domstate", dom) == "running", what="running")
    _, out, _ = sh(f"mkdir {snaps}/after-upgrade && ls {snaps}")
    assert out.split() == ["after-upgrade", "before-upgrade"]
    assert m.read(dom, "snapshots", "after-upgrade",
                  "parent") == "before-upgrade\n"
    assert m.read(dom, "snapshots", "after-upgrade", "state") == "running\n"
    tree = virsh("snapshot-list", "--tree", dom)
    assert re.search(r"before-upgrade\s*\n\s*\|\s*\n\s*\+- after-upgrade",
                     tree), tree
    assert m.read(dom, "snapshots", ".current") == "after-upgrade\n"

    # Bad input: nothing changes, an errno that fits, the reason in error.
    before = tree_state(m, dom)
    assert errno_of(os.mkdir, os.path.join(snaps, "after-upgrade")) == \
        errno.EEXIST
    assert errno_of(os.mkdir, os.path.join(snaps, ".current")) == \
        errno.EEXIST
    assert errno_of(os.mkdir, os.path.join(snaps, "a%b")) == errno.EINVAL
    assert "a%25b" in m.read(dom, "error")
    assert errno_of(os.mkdir, m.path(dom, "x")) == errno.EPERM
    assert errno_of(os.mkdir, m.path(dom, "snapshots", "after-upgrade",
                                     "x")) == errno.EPERM
    assert errno_of(m.write, "undo\n", dom, "snapshots", "after-upgrade",
                    "control") == errno.EINVAL
    assert "revert or delete" in m.read(dom, "error")
    # rmdir and rm -r never delete.
    assert errno_of(os.rmdir, os.path.join(snaps, "after-upgrade")) == \
        errno.EPERM
    rc, _, err = sh(f"rm -rf {snaps}/after-upgrade {snaps}", check=False)
    assert rc != 0 and "Operation not permitted" in err
    # Read-only walks never create or change anything.
    sh(f"ls -lR {m.dir} >/dev/null 2>&1; find {m.dir} >/dev/null 2>&1; "
       f"grep -r . {m.dir}/{dom}/snapshots >/dev/null 2>&1; "
       f"tar -cf /dev/null {m.dir}/{dom}/snapshots 2>/dev/null",
       check=False)
    assert tree_state(m, dom) == before

    # Revert: back to the paused domain of the first snapshot.
    assert virsh("domstate", dom) == "running"
    events = os.open(m.path(dom, "events"), os.O_RDONLY)
    try:
        m.write("revert\n", dom, "snapshots", "before-upgrade", "control")
        assert virsh("domstate", dom) == "paused"
        # libvirt's lifecycle events of a revert reach the events file,
        # ending in the captured state.
        ev = read_events(events, lambda ev: ev.get("state") == "paused")
        assert ev["data"]["reason"] == "from_snapshot", ev
    finally:
        os.close(events)
    assert m.read(dom, "state") == "paused\n"
    assert virsh_current(dom) == "before-upgrade"
    assert m.read(dom, "snapshots", ".current") == "before-upgrade\n"

    # Delete: gone from libvirt and from the tree at once.
    m.write("delete\n", dom, "snapshots", "after-upgrade", "control")
    assert snapshot_names(dom) == ["before-upgrade"]
    assert not os.path.exists(os.path.join(snaps, "after-upgrade"))
    assert m.ls(dom, "snapshots") == ["before-upgrade"]
    # And the name can be taken again.
    os.mkdir(os.path.join(snaps, "after-upgrade"))
    assert sorted(snapshot_names(dom)) == ["after-upgrade", "before-upgrade"]


def test_libvirt_snapshot_refused(mount, libvirtd, snapdom):
    """A raw disk cannot hold an internal snapshot: libvirt's refusal,
    nothing made."""
    dom = snapdom("raw", fmt="raw", start=False)
    m = mount("-c", libvirtd.uri, timeout=30)
    e = errno_of(os.mkdir, m.path(dom, "snapshots", "s1"))
    err = m.read(dom, "error")
    assert e == errno.EOPNOTSUPP, (e, err)
    assert "mkdir snapshots/s1" in err and "raw" in err, err
    assert snapshot_names(dom) == []
    assert m.ls(dom, "snapshots") == []


def test_libvirt_take_with_options(mount, libvirtd, snapdom):
    """snapshots/.take: a name, then a description and disk-only, written
    with printf; run at close, which returns the refusal."""
    dom = snapdom("opts")
    m = mount("-c", libvirtd.uri, timeout=30)
    snaps = m.path(dom, "snapshots")
    assert sorted(os.listdir(snaps)) == [".current", ".take"]
    assert m.read(dom, "snapshots", ".take") == "description\ndisk-only\n"
    sh(f"printf 'noted\\ndescription before the <upgrade>\\n' "
       f"> {snaps}/.take")
    assert snapshot_names(dom) == ["noted"]
    assert "<description>before the &lt;upgrade&gt;</description>" in \
        virsh("snapshot-dumpxml", dom, "noted")
    assert m.ls(dom, "snapshots") == ["noted"]
    assert m.read(dom, "snapshots", "noted", "state") == "running\n"

    # An unknown line: nothing is taken, close() fails with EINVAL (cat
    # reports it; a shell's own printf > FILE ignores close()).
    rc, _, err = sh(f"printf 'other\\nmemory-only\\n' | "
                    f"cat > {snaps}/.take", check=False)
    assert rc != 0 and "Invalid argument" in err, err
    assert snapshot_names(dom) == ["noted"]
    assert "memory-only" in m.read(dom, "error")

    # The disks alone: an external snapshot (overlays beside the image).
    sh(f"printf 'disks\\ndisk-only\\n' > {snaps}/.take")
    assert sorted(snapshot_names(dom)) == ["disks", "noted"]
    assert m.read(dom, "snapshots", "disks", "state") == "disk-snapshot\n"
    assert m.read(dom, "snapshots", "disks", "parent") == "noted\n"

    # Two writers take the same name at once: one wins, one gets EEXIST.
    for _ in range(2):
        got = {}
        name = f"race{_}"

        def by_mkdir():
            got["mkdir"] = errno_of(os.mkdir, os.path.join(snaps, name))
        t = threading.Thread(target=by_mkdir)
        t.start()
        rc, _out, err = sh(f"echo {name} | cat > {snaps}/.take", check=False)
        t.join(timeout=60)
        got["take"] = errno.EEXIST if "File exists" in err else rc
        assert sorted(got.values()) == [0, errno.EEXIST], (got, err)
        assert snapshot_names(dom).count(name) == 1


def test_libvirt_snapshot_outlasts_timeout(mount, libvirtd, snapdom):
    """Taking a snapshot of a running domain's memory takes libvirt longer
    than -o timeout=1 here (seconds for 256 MiB under TCG): mkdir waits for
    the snapshot to appear, as control's start does, and succeeds."""
    dom = snapdom("big", mib=256)
    m = mount("-c", libvirtd.uri, timeout=1)
    assert m.ls(dom, "snapshots") == []
    t0 = time.monotonic()
    os.mkdir(m.path(dom, "snapshots", "slow"))
    took = time.monotonic() - t0
    print(f"mkdir took {took:.1f} s")
    assert snapshot_names(dom) == ["slow"]
    assert "mkdir" not in m.read(dom, "error")
    wait_for(lambda: m.ls(dom, "snapshots") == ["slow"], timeout=30,
             what="the snapshot listed")
    assert took < 30 + 5


# ---- direct QMP ----

def disk_write(vm, pattern):
    """Writes pattern to the disk's first 4 KiB through the running QEMU
    (HMP's qemu-io, which prints to QEMU's stdout) and flushes it."""
    for cmd in (f"write -P {pattern:#x} 0 4k", "flush"):
        vm.oracle.execute("human-monitor-command",
                          **{"command-line": f'qemu-io drive0 "{cmd}"'})


def disk_holds(img, pattern):
    """Whether the image's first 4 KiB hold pattern, read beside the running
    QEMU (-U: it holds the image's lock)."""
    p = subprocess.run(["qemu-io", "-U", "-r", "-f", "qcow2", "-c",
                        f"read -P {pattern:#x} 0 4k", img],
                       capture_output=True, text=True)
    out = p.stdout + p.stderr
    return "read 4096/4096" in out and "fail" not in out


def image_snapshots(vm):
    names = []
    for b in vm.oracle.execute("query-block"):
        img = b.get("inserted", {}).get("image", {})
        names += [s["name"] for s in img.get("snapshots", [])]
    return names


def test_qmp_snapshots(mount, qmp_dir, vms, images):
    img = os.path.join(images, "disk.qcow2")
    sh(f"qemu-img create -q -f qcow2 {img} 16M")
    vm = vms("snapvm", "-machine", "pc", "-accel", "tcg", "-m", "32",
             "-drive", f"if=none,id=drive0,file={img},format=qcow2",
             "-device", "virtio-blk-pci,drive=drive0")
    m = mount("--qmp-dir", qmp_dir, timeout=30)
    snaps = m.path("snapvm", "snapshots")
    assert m.ls("snapvm", "snapshots") == []
    assert not os.path.exists(os.path.join(snaps, ".current"))

    disk_write(vm, 0x11)
    assert disk_holds(img, 0x11)
    os.mkdir(os.path.join(snaps, "s1"))
    assert image_snapshots(vm) == ["s1"]
    assert m.ls("snapvm", "snapshots") == ["s1"]
    assert sorted(os.listdir(os.path.join(snaps, "s1"))) == [
        "control", "created", "info", "parent", "state"]
    info = dict(line.split(" ", 1) for line in
                m.read("snapvm", "snapshots", "s1", "info").splitlines())
    assert info["name"] == "s1" and int(info["vm-state-size"]) > 0
    assert abs(int(info["created"]) - time.time()) < 600
    assert m.read("snapvm", "snapshots", "s1",
                  "created") == info["created"] + "\n"
    assert m.read("snapvm", "snapshots", "s1", "state") == "running\n"
    assert m.read("snapvm", "snapshots", "s1", "parent") == ""
    assert errno_of(os.mkdir, os.path.join(snaps, "s1")) == errno.EEXIST
    assert errno_of(os.rmdir, os.path.join(snaps, "s1")) == errno.EPERM

    # A value written after the snapshot goes away with a revert.
    disk_write(vm, 0x22)
    assert disk_holds(img, 0x22)
    sh(f"ls -lR {m.dir} >/dev/null 2>&1; find {m.dir} >/dev/null",
       check=False)
    assert image_snapshots(vm) == ["s1"]
    m.write("revert\n", "snapvm", "snapshots", "s1", "control")
    assert disk_holds(img, 0x11)

    # .take: a description is QEMU's to ignore; disk-only it cannot do.
    rc, _, err = sh(f"printf 's3\\ndisk-only\\n' | cat > {snaps}/.take",
                    check=False)
    assert rc != 0 and "not supported" in err, err
    assert image_snapshots(vm) == ["s1"]
    sh(f"printf 's2\\ndescription ignored\\n' > {snaps}/.take")
    m.write("delete\n", "snapvm", "snapshots", "s1", "control")
    assert image_snapshots(vm) == ["s2"]
    assert m.ls("snapvm", "snapshots") == ["s2"]
    assert not os.path.exists(os.path.join(snaps, "s1"))

    # The image agrees once QEMU has quit.
    vm.oracle.execute("quit")
    vm.proc.wait(timeout=30)
    _, out, _ = sh(f"qemu-img snapshot -l {img}")
    assert re.search(r"\bs2\b", out) and not re.search(r"\bs1\b", out), out


def test_qmp_snapshots_raw_and_hung(mount, qmp_dir, vms, images):
    """A raw disk cannot hold a snapshot: EOPNOTSUPP with the reason in
    error. A hung QEMU (SIGSTOP): its snapshots/ fails with ETIMEDOUT within
    the deadline, while another VM's answers at once."""
    raw = os.path.join(images, "disk.raw")
    sh(f"qemu-img create -q -f raw {raw} 16M")
    vms("rawvm", "-drive", f"if=none,id=drive0,file={raw},format=raw")
    img = os.path.join(images, "disk.qcow2")
    sh(f"qemu-img create -q -f qcow2 {img} 16M")
    hung = vms("hungvm", "-drive",
               f"if=none,id=drive0,file={img},format=qcow2")
    m = mount("--qmp-dir", qmp_dir, timeout=2)

    assert errno_of(os.mkdir, m.path("rawvm", "snapshots", "s1")) == \
        errno.EOPNOTSUPP
    err = m.read("rawvm", "error")
    assert "mkdir snapshots/s1" in err and "qcow2" in err, err
    assert m.ls("rawvm", "snapshots") == []

    os.kill(hung.proc.pid, signal.SIGSTOP)
    try:
        done = {}

        def walk():
            t0 = time.monotonic()
            done["errno"] = errno_of(os.listdir, m.path("hungvm",
                                                         "snapshots"))
            done["took"] = time.monotonic() - t0
        t = threading.Thread(target=walk)
        t.start()
        time.sleep(0.3)
        t0 = time.monotonic()
        assert m.ls("rawvm", "snapshots") == []
        assert time.monotonic() - t0 < 1.5
        t.join(timeout=30)
        assert done["errno"] == errno.ETIMEDOUT, done
        assert done["took"] < 2 + 5, done
        t0 = time.monotonic()
        assert errno_of(os.mkdir, m.path("hungvm", "snapshots", "s1")) == \
            errno.ETIMEDOUT
        assert time.monotonic() - t0 < 2 + 5
    finally:
        os.kill(hung.proc.pid, signal.SIGCONT)


def test_ctlgroup_takes_snapshots(mount, qmp_dir, vms, images):
    """With -o allow_other,ctlgroup=GROUP, snapshots/ is 0775 and each
    control 0220 of that group: its members take, revert and delete
    snapshots; other users read, and get EACCES for the rest, nothing
    made."""
    img = os.path.join(images, "disk.qcow2")
    sh(f"qemu-img create -q -f qcow2 {img} 16M")
    os.chmod(images, 0o755)
    vm = vms("vm-a", "-machine", "pc", "-accel", "tcg", "-m", "32",
             "-drive", f"if=none,id=drive0,file={img},format=qcow2",
             "-device", "virtio-blk-pci,drive=drive0")
    group = "hvfs-test-snap"
    subprocess.run(["groupadd", "-f", group], check=True)
    try:
        m = mount("--qmp-dir", qmp_dir, "-o",
                  f"allow_other,ctlgroup={group}")
        snaps = m.path("vm-a", "snapshots")
        gid = int(subprocess.run(["getent", "group", group], check=True,
                                 capture_output=True, text=True)
                  .stdout.split(":")[2])
        st = os.stat(snaps)
        assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o775, gid)

        def as_user(cmd, grp):
            return subprocess.run(
                ["setpriv", "--reuid=nobody", f"--regid={grp}",
                 "--clear-groups", "sh", "-c", cmd],
                capture_output=True, text=True, timeout=60)
        p = as_user(f"mkdir {snaps}/nope", "nogroup")
        assert p.returncode != 0 and "Permission denied" in p.stderr
        assert image_snapshots(vm) == []
        p = as_user(f"mkdir {snaps}/s1 && cat {snaps}/s1/state", group)
        assert p.returncode == 0 and p.stdout == "running\n", p.stderr
        assert image_snapshots(vm) == ["s1"]
        st = os.stat(os.path.join(snaps, "s1", "control"))
        assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o220, gid)
        p = as_user(f"cat {snaps}/s1/created && "
                    f"echo delete > {snaps}/s1/control", "nogroup")
        assert p.returncode != 0 and "Permission denied" in p.stderr
        assert image_snapshots(vm) == ["s1"]
        p = as_user(f"echo revert > {snaps}/s1/control && "
                    f"echo delete > {snaps}/s1/control && ls {snaps}", group)
        assert p.returncode == 0 and p.stdout == "", p.stderr
        assert image_snapshots(vm) == []
        assert "uid 65534" in m.logtext()
    finally:
        subprocess.run(["groupdel", group])
