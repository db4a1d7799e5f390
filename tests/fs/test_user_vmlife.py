# SPDX-License-Identifier: GPL-2.0-or-later
"""A VM's life through files (issue 16), as an operator drives it with cp,
cat and echo, on the private libvirtd with virsh as the oracle: .define and
.create, every bad input, two writers at once."""

import errno
import os
import subprocess
import tempfile
import threading
import uuid

import pytest

from conftest import remove_prefixed
from hvtest import (DOMAIN_XML, QEMU, errno_of, read_events, sh, virsh,
                    wait_for)

PREFIX = "hvt-vmlife-"


@pytest.fixture(scope="module")
def clean(libvirtd):
    remove_prefixed(PREFIX)
    yield
    remove_prefixed(PREFIX)


def xml_of(name, uid=None, description=None):
    kvm = os.access("/dev/kvm", os.R_OK | os.W_OK)
    text = DOMAIN_XML.format(name=name, qemu=QEMU,
                             type="kvm" if kvm else "qemu")
    extra = ""
    if uid:
        extra += f"  <uuid>{uid}</uuid>\n"
    if description:
        extra += f"  <description>{description}</description>\n"
    return text.replace("  <memory", extra + "  <memory", 1)


def xml_file(text):
    f = tempfile.NamedTemporaryFile("w", suffix=".xml", delete=False)
    f.write(text)
    f.close()
    return f.name


def all_names():
    return virsh("list", "--all", "--name").split()


def write_close(path, data):
    """open(O_TRUNC), write, close: the errno of close() (or of a write),
    0 when all worked."""
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, data.encode() if isinstance(data, str) else data)
    except OSError as e:
        os.close(fd)
        return e.errno
    try:
        os.close(fd)
    except OSError as e:
        return e.errno
    return 0


def test_define_with_cp(clean, libvirtd, mount):
    name = PREFIX + "web-3"
    src = xml_file(xml_of(name))
    m = mount("-c", libvirtd.uri)
    names = os.listdir(m.dir)
    assert ".define" in names and ".create" in names
    assert oct(os.stat(m.path(".define")).st_mode & 0o777) == "0o200"
    assert errno_of(m.read, ".define") == errno.EACCES
    sh(f"cp {src} {m.path('.define')}")
    # libvirt has it, and the tree shows it at once (no wait).
    assert name in all_names()
    assert name in m.ls()
    assert m.read(name, "state") == "shutoff\n"
    assert virsh("dominfo", name).count("Persistent:     yes") == 1
    # Started through its control file; virsh agrees.
    m.write("start", name, "control")
    assert virsh("domstate", name) == "running"
    assert m.read(".error") == ""
    os.unlink(src)


def test_define_with_shell_redirection(clean, libvirtd, mount):
    name = PREFIX + "redir"
    src = xml_file(xml_of(name))
    m = mount("-c", libvirtd.uri)
    sh(f"cat {src} > {m.path('.define')}")
    assert name in all_names() and name in m.ls()
    # The same again: the name exists; cat reports close()'s error.
    st, _, err = sh(f"cat {src} > {m.path('.define')}", check=False)
    assert st != 0 and "exists" in err, err
    st, _, err = sh(f"cp {src} {m.path('.define')}", check=False)
    assert st != 0 and "exists" in err, err
    assert all_names().count(name) == 1
    # bash's builtin echo: bash closes the file with dup2(), which drops
    # close()'s error: the status is 0, .error has the refusal (documented).
    st, _, _ = sh(f"echo 'not xml' > {m.path('.define')}", check=False)
    assert st == 0
    assert "not xml" not in all_names()
    assert "define: " in m.read(".error") and "EINVAL" in m.read(".error")
    os.unlink(src)


def test_define_bad_input(clean, libvirtd, mount, domains):
    have = domains("have", start=False)
    have_uuid = virsh("domuuid", have)
    m = mount("-c", libvirtd.uri)
    before = sorted(all_names())
    define = m.path(".define")
    cases = [
        ("<domain type='qemu'><name>x", errno.EINVAL, None),
        ("not xml at all", errno.EINVAL, None),
        (xml_of(have), errno.EEXIST, have),
        (xml_of(PREFIX + "clash", uid=have_uuid), errno.EEXIST, have_uuid),
        (xml_of(PREFIX + "nul") + "\0", errno.EINVAL, "NUL"),
        # libvirt's schema refuses an unknown element (validated).
        (xml_of(PREFIX + "schema").replace("<vcpu>", "<bogus/><vcpu>"),
         errno.EINVAL, None),
    ]
    for text, want, says in cases:
        assert write_close(define, text) == want, text
        err = m.read(".error")
        assert "define: " in err and errno.errorcode[want] in err, err
        if says:
            assert says in err, err
        assert sorted(all_names()) == before
    # Too big: EFBIG at the write past 1 MiB, and nothing is defined.
    big = xml_of(PREFIX + "big").replace(
        "</domain>", "<!--" + "x" * (1 << 20) + "--></domain>")
    assert write_close(define, big) == errno.EFBIG
    assert sorted(all_names()) == before
    # An open that writes nothing runs nothing.
    assert write_close(define, "") == 0
    assert sorted(all_names()) == before
    # Nothing can be created, renamed or removed at the root.
    assert errno_of(os.unlink, define) == errno.EPERM
    assert errno_of(os.mkdir, m.path("newdir")) == errno.EPERM


def test_two_writers_one_name(clean, libvirtd, mount):
    name = PREFIX + "race"
    text = xml_of(name)
    m = mount("-c", libvirtd.uri)
    for _ in range(3):
        virsh("undefine", name, check=False)
        results = []
        gate = threading.Barrier(2)

        def writer():
            fd = os.open(m.path(".define"), os.O_WRONLY | os.O_TRUNC)
            os.write(fd, text.encode())
            gate.wait()
            try:
                os.close(fd)
                results.append(0)
            except OSError as e:
                results.append(e.errno)
        ts = [threading.Thread(target=writer) for _ in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert sorted(results) == [0, errno.EEXIST], results
        assert all_names().count(name) == 1
        assert name in m.ls()


def test_create_is_transient_and_running(clean, libvirtd, mount):
    name = PREFIX + "tmp"
    src = xml_file(xml_of(name))
    # Starting a QEMU under TCG on a loaded machine may take longer than
    # the default 5 s (the documented ETIMEDOUT).
    m = mount("-c", libvirtd.uri, timeout=60)
    sh(f"cp {src} {m.path('.create')}")
    assert virsh("domstate", name) == "running"
    assert "Persistent:     no" in virsh("dominfo", name)
    assert name in m.ls()
    assert m.read(name, "state") == "running\n"
    # Running already: libvirt says so, nothing changes.
    assert write_close(m.path(".create"), xml_of(name)) in (errno.EEXIST,
                                                            errno.EBUSY)
    assert "create: " in m.read(".error")
    # Gone when it stops.
    m.write("destroy", name, "control")
    wait_for(lambda: name not in m.ls(), what="the transient domain leaves")
    assert name not in all_names()
    os.unlink(src)


def test_define_per_host(clean, libvirtd, mount):
    name = PREFIX + "perhost"
    src = xml_file(xml_of(name))
    m = mount("-c", "unix=" + libvirtd.uri, "-c", "tcp=" + libvirtd.tcp_uri)
    # Only hosts' levels have them, not the root of several hosts.
    assert ".define" not in os.listdir(m.dir)
    assert errno_of(os.stat, m.path(".define")) == errno.ENOENT
    sh(f"cp {src} {m.path('tcp', '.define')}")
    assert name in all_names()
    assert name in m.ls("tcp")
    wait_for(lambda: name in m.ls("unix"), what="the other host sees it")
    assert write_close(m.path("unix", ".define"), xml_of(name)) \
        == errno.EEXIST
    assert "exists" in m.read("unix", ".error")
    assert m.read("tcp", ".error") == ""
    os.unlink(src)


def test_qmp_level_has_no_define(qmp_dir, vms, mount):
    vms("vm-a")
    m = mount("--qmp-dir", qmp_dir)
    assert ".define" not in os.listdir(m.dir)
    assert errno_of(os.stat, m.path(".create")) == errno.ENOENT


def test_edit_xml_with_cp(clean, libvirtd, mount, domains):
    name = domains("edit", start=False)
    uid = virsh("domuuid", name)
    m = mount("-c", libvirtd.uri)
    assert oct(os.stat(m.path(name, "xml")).st_mode & 0o777) == "0o644"
    new = xml_file(xml_of(name, uid=uid, description="edited by cp"))
    sh(f"cp {new} {m.path(name, 'xml')}")
    assert "<description>edited by cp</description>" in \
        virsh("dumpxml", name)
    # The next read is libvirt's normalised XML.
    assert m.read(name, "xml") == virsh("dumpxml", name) + "\n" or \
        m.read(name, "xml").strip() == virsh("dumpxml", name).strip()
    # Another name or uuid, bad XML: refused, the definition unchanged.
    before = virsh("dumpxml", name)
    other = xml_of(PREFIX + "other", description="x")
    assert write_close(m.path(name, "xml"), other) == errno.EINVAL
    assert write_close(m.path(name, "xml"), "<domain><name>") == errno.EINVAL
    assert write_close(m.path(name, "xml"),
                       xml_of(name, uid=str(uuid.uuid4()))) == errno.EINVAL
    assert virsh("dumpxml", name) == before
    assert "xml: " in m.read(name, "error")
    # Editors: sed -i makes a temporary file beside it (EACCES); a rename
    # onto xml is refused (EPERM); nothing changed.
    st, _, err = sh(f"sed -i 's/edited by cp/edited by sed/' "
                    f"{m.path(name, 'xml')}", check=False)
    assert st != 0 and "Permission denied" in err, err
    assert errno_of(os.rename, m.path(name, "state"), m.path(name, "xml")) \
        == errno.EPERM
    assert virsh("dumpxml", name) == before
    # A shell redirection of a sed pipeline works in place.
    sh(f"sed 's/edited by cp/edited by sed/' {new} > {m.path(name, 'xml')}")
    assert "edited by sed" in virsh("dumpxml", name)
    os.unlink(new)


def test_undefine(clean, libvirtd, mount, domains):
    off = domains("undef-off", start=False)
    on = domains("undef-on")
    m = mount("-c", libvirtd.uri)
    assert "undefine" in m.read(off, "control").split()
    # rm -r over the mount undefines nothing.
    st, _, err = sh(f"rm -rf {m.dir}/{PREFIX}undef-*", check=False)
    assert st != 0 and "Operation not permitted" in err, err
    assert off in all_names() and on in all_names()
    m.write("undefine", off, "control")
    assert off not in all_names()
    assert off not in m.ls()
    # Running: it becomes transient and stays until it stops.
    m.write("undefine", on, "control")
    assert "Persistent:     no" in virsh("dominfo", on)
    assert on in m.ls()
    # Transient: libvirt refuses, EBUSY.
    assert errno_of(m.write, "undefine", on, "control") == errno.EBUSY
    assert "transient" in m.read(on, "error")
    m.write("destroy", on, "control")
    wait_for(lambda: on not in m.ls(), what="it leaves")


def test_autostart(clean, libvirtd, mount, domains):
    name = domains("auto", start=False)
    m = mount("-c", libvirtd.uri)
    assert oct(os.stat(m.path(name, "autostart")).st_mode & 0o777) == "0o644"
    assert m.read(name, "autostart") == "no\n"
    sh(f"echo yes > {m.path(name, 'autostart')}")
    assert "Autostart:      enable" in virsh("dominfo", name)
    assert m.read(name, "autostart") == "yes\n"
    m.write("no\n", name, "autostart")
    assert "Autostart:      disable" in virsh("dominfo", name)
    assert errno_of(m.write, "maybe", name, "autostart") == errno.EINVAL
    assert "expected yes or no" in m.read(name, "error")
    assert m.read(name, "autostart") == "no\n"


def test_vcpus(clean, libvirtd, mount, domains):
    name = PREFIX + "cpus"
    virsh("define", xml_file(xml_of(name).replace(
        "<vcpu>1</vcpu>", "<vcpu current='1'>2</vcpu>")))
    try:
        m = mount("-c", libvirtd.uri)
        assert m.read(name, "vcpus") == "1 2\n"
        # Not running: libvirt's refusal, EBUSY.
        assert errno_of(m.write, "2", name, "vcpus") == errno.EBUSY
        virsh("start", name)
        live = virsh("vcpucount", name, "--live", "--active")
        assert m.read(name, "vcpus") == f"{live} 2\n"
        for bad in ("0", "3", "two", "\n"):
            assert errno_of(m.write, bad, name, "vcpus") == errno.EINVAL, bad
        assert m.read(name, "vcpus") == f"{live} 2\n"
        # Hot-plug: virsh sees the new count.
        sh(f"echo 2 > {m.path(name, 'vcpus')}")
        assert virsh("vcpucount", name, "--live", "--active") == "2"
        assert m.read(name, "vcpus") == "2 2\n"
    finally:
        virsh("destroy", name, check=False)
        virsh("undefine", name, check=False)


def test_only_root_makes_and_changes(clean, libvirtd, mount, domains):
    name = domains("nobody", start=False)
    src = xml_file(xml_of(PREFIX + "by-nobody"))
    os.chmod(src, 0o644)
    m = mount("-c", libvirtd.uri, "-o", "allow_other")
    for cmd in (f"cp {src} {m.path('.define')}",
                f"cat {src} > {m.path('.create')}",
                f"echo yes > {m.path(name, 'autostart')}",
                f"echo 1 > {m.path(name, 'vcpus')}",
                f"cp {src} {m.path(name, 'xml')}",
                f"echo undefine > {m.path(name, 'control')}"):
        p = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup",
                            "--clear-groups", "sh", "-c", cmd],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode != 0 and "Permission denied" in p.stderr, cmd
    # Readers may read what virsh dominfo shows.
    p = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup",
                        "--clear-groups", "cat", m.path(name, "autostart"),
                        m.path(name, "vcpus")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and p.stdout == "no\n1 1\n", p.stderr
    assert PREFIX + "by-nobody" not in all_names()
    assert name in all_names()
    os.unlink(src)


def test_define_and_undefine_reach_events(clean, libvirtd, mount):
    name = PREFIX + "evented"
    src = xml_file(xml_of(name))
    m = mount("-c", libvirtd.uri)
    fd = os.open(m.path(".events"), os.O_RDONLY)
    try:
        sh(f"cp {src} {m.path('.define')}")
        ev = read_events(fd, lambda e: e["domain"] == name and
                         isinstance(e.get("data"), dict) and
                         e["data"].get("reason") == "added", timeout=20)
        assert ev["data"]["event"] == "defined"
        # A redefinition says "updated"; undefine, that it left.
        uid = virsh("domuuid", name)
        v2 = xml_file(xml_of(name, uid=uid, description="v2"))
        sh(f"cp {v2} {m.path(name, 'xml')}")
        os.unlink(v2)
        read_events(fd, lambda e: e["domain"] == name and
                    isinstance(e.get("data"), dict) and
                    e["data"].get("reason") == "updated", timeout=20)
        m.write("undefine", name, "control")
        read_events(fd, lambda e: e["domain"] == name and
                    e["kind"] == "undefined", timeout=20)
    finally:
        os.close(fd)
    os.unlink(src)
