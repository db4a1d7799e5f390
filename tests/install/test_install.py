# SPDX-License-Identifier: GPL-2.0-or-later
"""What a package of hvfs ships, checked from `meson install --destdir`.

The build under test is installed into a temporary DESTDIR (no rebuild), and
the installed tree is used the way a user would: the library through
pkg-config by an outside program, the daemon through `mount -t fuse.hvfs`
and an fstab line, the systemd unit's command lines, the man pages. Real
QEMU processes in a qmp-dir are the peers, their second monitor the oracle.
"""

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "fs"))
from conftest import libvirtd, qmp_dir, vms  # noqa: E402,F401 (fixtures)
from hvtest import (define_domain, remove_domain, sh, virsh,  # noqa: E402
                    wait_for)

BUILD = os.environ["HVFS_BUILD_ROOT"]
SRC = os.environ["HVFS_SOURCE_ROOT"]


def build_option(name):
    out = subprocess.run(["meson", "introspect", BUILD, "--buildoptions"],
                         capture_output=True, text=True, check=True).stdout
    for o in json.loads(out):
        if o["name"] == name:
            return o["value"]
    raise KeyError(name)


class Installed:
    def __init__(self, dest):
        self.dest = dest
        prefix = build_option("prefix")

        def under(opt):
            d = build_option(opt)
            return d if d.startswith("/") else os.path.join(prefix, d)
        self.sbindir = under("sbindir")
        self.libdir = under("libdir")
        self.includedir = under("includedir")
        self.mandir = under("mandir")
        self.datadir = under("datadir")
        unitdir = build_option("systemdunitdir")
        if not unitdir:
            unitdir = subprocess.run(
                ["pkg-config", "--variable=systemdsystemunitdir", "systemd"],
                capture_output=True, text=True).stdout.strip() or \
                "/lib/systemd/system"
        self.unitdir = None if unitdir == "no" else unitdir

    def path(self, p):
        """Where the installed path p is under DESTDIR."""
        return self.dest + p


@pytest.fixture(scope="module")
def inst():
    dest = tempfile.mkdtemp(prefix="hvfs-dest-")
    p = subprocess.run(["meson", "install", "-C", BUILD, "--no-rebuild",
                        "--destdir", dest], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    yield Installed(dest)
    subprocess.run(["rm", "-rf", dest])


def version_of(vm):
    v = vm.oracle.execute("query-version")["qemu"]
    return f"{v['major']}.{v['minor']}.{v['micro']}"


def test_files(inst):
    i = inst
    hvfs = i.path(f"{i.sbindir}/hvfs")
    assert os.access(hvfs, os.X_OK)
    version = build_project_version()
    so = i.path(f"{i.libdir}/libhv.so.{version}")
    assert os.path.isfile(so)
    assert os.readlink(i.path(f"{i.libdir}/libhv.so.0")) == \
        f"libhv.so.{version}"
    assert os.readlink(i.path(f"{i.libdir}/libhv.so")) == "libhv.so.0"
    _, out, _ = sh(f"readelf -d {so}")
    assert re.search(r"SONAME\)\s+Library soname: \[libhv\.so\.0\]", out), out
    for h in ("hv.h", "qmp.h"):
        assert os.path.isfile(i.path(f"{i.includedir}/hvfs/{h}"))
    for page in ("man8/hvfs.8", "man5/hvfs.5"):
        f = i.path(f"{i.mandir}/{page}")
        assert os.path.isfile(f)
        # man --warnings prints nothing for a clean page.
        _, _, err = sh(f"man --warnings -l {f} >/dev/null")
        assert err == "", err
    if i.unitdir:
        assert os.path.isfile(i.path(f"{i.unitdir}/hvfs.service"))
    assert os.path.isfile(
        i.path(f"{i.datadir}/doc/hvfs/examples/hv-versions.c"))


def build_project_version():
    out = subprocess.run(["meson", "introspect", BUILD, "--projectinfo"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)["version"]


def header_functions(path):
    """The functions a public header declares."""
    names = set()
    with open(path) as f:
        for line in f:
            m = re.match(r"^[a-z][\w \*]*?\b((?:hv|qmp)_\w+)\s*\(", line)
            if m and not line.startswith("typedef"):
                names.add(m.group(1))
    return names


def test_abi_is_the_headers(inst):
    """libhv.so exports exactly the functions of hv.h and qmp.h, versioned:
    nothing internal leaks, nothing public is missing."""
    i = inst
    declared = set()
    for h in ("hv.h", "qmp.h"):
        declared |= header_functions(i.path(f"{i.includedir}/hvfs/{h}"))
    assert "hv_open" in declared and "qmp_execute" in declared
    _, out, _ = sh(f"nm -D --defined-only {i.path(i.libdir)}/libhv.so")
    exported = set()
    for line in out.splitlines():
        name = line.split()[-1]
        if name == "HVFS_0.1":
            continue
        assert name.endswith("@@HVFS_0.1"), line
        exported.add(name.split("@")[0])
    assert exported == declared, (
        f"exported, not declared: {sorted(exported - declared)}; "
        f"declared, not exported: {sorted(declared - exported)}")
    # libhv.sym exports by prefix: no private header may declare a
    # function with a public prefix.
    for h in sorted(os.listdir(os.path.join(SRC, "lib"))):
        if h.endswith(".h"):
            leaked = header_functions(os.path.join(SRC, "lib", h))
            assert not leaked, f"lib/{h} declares public names: {leaked}"


def pkg_env(inst):
    env = dict(os.environ)
    env["PKG_CONFIG_PATH"] = inst.path(f"{inst.libdir}/pkgconfig")
    # The .pc file names the final prefix; the sysroot points it at DESTDIR.
    env["PKG_CONFIG_SYSROOT_DIR"] = inst.dest
    env["LD_LIBRARY_PATH"] = inst.path(inst.libdir)
    return env


def test_pkg_config(inst):
    env = pkg_env(inst)
    p = subprocess.run(["pkg-config", "--modversion", "hvfs"], env=env,
                       capture_output=True, text=True)
    assert p.stdout.strip() == build_project_version(), p.stderr
    p = subprocess.run(["pkg-config", "--print-requires-private", "hvfs"],
                       env=env, capture_output=True, text=True)
    assert p.stdout.split() == ["json-c", "libtirpc", "libsasl2", "gnutls"]
    p = subprocess.run(["pkg-config", "--cflags", "--libs", "hvfs"],
                       env=env, capture_output=True, text=True)
    flags = p.stdout.split()
    assert f"-I{inst.path(inst.includedir)}/hvfs" in flags
    assert f"-L{inst.path(inst.libdir)}" in flags and "-lhv" in flags


@pytest.fixture(scope="module")
def example(inst):
    """hv-versions compiled from its installed source against the installed
    library, as an outside program is."""
    out = tempfile.mkdtemp(prefix="hvfs-example-")
    src = inst.path(f"{inst.datadir}/doc/hvfs/examples/hv-versions.c")
    exe = os.path.join(out, "hv-versions")
    env = pkg_env(inst)
    # A sanitized libhv needs its runtime loaded first: build the program
    # the same way.
    san = build_option("b_sanitize")
    san = f"-fsanitize={san}" if san != "none" else ""
    p = subprocess.run(
        f"cc -std=gnu11 -Wall -Wextra -Werror {san} -o {exe} {src} "
        "$(pkg-config --cflags --libs hvfs)",
        shell=True, env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    yield exe, env
    subprocess.run(["rm", "-rf", out])


def expected_table(rows):
    width = max([12] + [len(n) + 2 for n, _ in rows])
    lines = [f"{'Domain':<{width}}QEMU Version"]
    lines += [f"{n:<{width}}{v}" for n, v in sorted(rows)]
    return "\n".join(lines) + "\n"


def test_example_lists_versions(example, inst, qmp_dir, vms):
    exe, env = example
    a = vms("droplet-1")
    b = vms("droplet-with-a-long-name")
    gone = vms("droplet-gone")
    gone.proc.kill()  # leaves its sockets: a domain that is not running
    gone.proc.wait()
    rows = [(a.name, version_of(a)), (b.name, version_of(b)),
            (gone.name, "-")]
    # Only the installed libhv.so may be used.
    _, ldd, _ = sh(f"env LD_LIBRARY_PATH={env['LD_LIBRARY_PATH']} ldd {exe}")
    assert f"{inst.path(inst.libdir)}/libhv.so.0" in ldd, ldd
    p = subprocess.run([exe, f"qmp-dir:{qmp_dir}"], env=env,
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert p.stdout == expected_table(rows)
    # The copy built in the tree says the same.
    p2 = subprocess.run([os.path.join(BUILD, "lib", "examples",
                                      "hv-versions"), f"qmp-dir:{qmp_dir}"],
                        capture_output=True, text=True, timeout=30)
    assert (p2.returncode, p2.stdout) == (0, p.stdout)


def test_example_libvirt(example, libvirtd):
    """Through the tests' private libvirtd, with virsh as the oracle. Other
    tests may define and remove domains meanwhile, so only this test's rows
    are compared."""
    exe, env = example
    on, off = "hvt-ship-on", "hvt-ship-off"
    try:
        for name in (on, off):
            remove_domain(name)
            define_domain(name)
        virsh("start", on)
        reply = json.loads(virsh("qemu-monitor-command", on,
                                 '{"execute":"query-version"}'))
        v = reply["return"]["qemu"]
        want = {on: f"{v['major']}.{v['minor']}.{v['micro']}", off: "-"}
        p = subprocess.run([exe, libvirtd.uri], env=env,
                           capture_output=True, text=True, timeout=60)
        lines = p.stdout.splitlines()
        assert lines[0].split() == ["Domain", "QEMU", "Version"], p.stdout
        width = lines[0].index("QEMU")
        got = {}
        for line in lines[1:]:
            name, version = line[:width].rstrip(), line[width:]
            if name in want:
                got[name] = version
        assert got == want, p.stdout + p.stderr
    finally:
        for name in (on, off):
            remove_domain(name)


def test_example_errors(example):
    exe, env = example
    p = subprocess.run([exe, "nonsense:"], env=env, capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 1 and p.stdout == "" and "nonsense:" in p.stderr
    p = subprocess.run([exe, "a", "b"], env=env, capture_output=True,
                       text=True)
    assert p.returncode == 2 and "usage" in p.stderr


# mount(8) finds mount.fuse3, which runs `hvfs SOURCE MOUNTPOINT -o OPTS`
# through /bin/sh with no PATH of its own, so `hvfs` must be in the shell's
# default PATH (/usr/local/sbin, /usr/sbin, ...). The installed sbindir is
# bind-mounted on /usr/local/sbin in a private mount namespace, which also
# keeps the FUSE mounts out of everyone else's sight.
MOUNT_SCRIPT = r"""
set -u
mount --bind "$SBIN" /usr/local/sbin || exit 100
daemon() { pgrep -f -x "hvfs qmp-dir:$QD $MNT -o .*"; }
export PATH=/usr/local/sbin:$PATH
gone() {  # waits for the daemon of the last mount to exit
	for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
	echo "daemon $1 still runs"; kill "$1"; return 1
}
echo "== mount -t"
mount -t fuse.hvfs -o timeout=3,noatime,nosuid qmp-dir:"$QD" "$MNT" || echo "mount failed $?"
findmnt -n -o FSTYPE,SOURCE,OPTIONS "$MNT"
pid=$(daemon); echo "pid ${pid:+found}"
for d in "$MNT"/*/; do echo "$(basename "$d") $(cat "$d/version")"; done
umount "$MNT" || echo "umount failed"
gone "$pid"
echo "== fstab"
# mount(8) keeps relatime and lazytime for the helper, which libfuse lacks.
echo "qmp-dir:$QD $MNT fuse.hvfs defaults,_netdev,nofail,relatime,lazytime,nosuid,x-systemd.automount,comment=x,timeout=3 0 0" > "$FSTAB"
mount -T "$FSTAB" "$MNT" || echo "mount failed $?"
findmnt -n -o FSTYPE,SOURCE,OPTIONS "$MNT"
pid=$(daemon); echo "pid ${pid:+found}"
for d in "$MNT"/*/; do echo "$(basename "$d") $(cat "$d/version")"; done
umount "$MNT" || echo "umount failed"
gone "$pid"
echo "== direct"
# What mount(8) filters out may still reach hvfs from other callers.
hvfs qmp-dir:"$QD" "$MNT" -o defaults,_netdev,nofail,user,users,auto,noauto,x-a=b,comment=x,strictatime,nodiratime || echo "hvfs failed $?"
findmnt -n -o FSTYPE,SOURCE,OPTIONS "$MNT"
pid=$(daemon); echo "pid ${pid:+found}"
for d in "$MNT"/*/; do echo "$(basename "$d") $(cat "$d/version")"; done
umount "$MNT" || echo "umount failed"
gone "$pid"
echo "== bad option"
mount -t fuse.hvfs -o bogus qmp-dir:"$QD" "$MNT" 2>&1; echo "status $?"
mountpoint -q "$MNT" && echo "still mounted"
echo "== end"
"""


def test_mount_t_and_fstab(inst, qmp_dir, vms):
    a = vms("ship-a")
    b = vms("ship-b")
    with tempfile.TemporaryDirectory(prefix="hvfs-mnt-") as t:
        mnt = os.path.join(t, "hv")
        os.mkdir(mnt)
        env = dict(os.environ, SBIN=inst.path(inst.sbindir), QD=qmp_dir,
                   MNT=mnt, FSTAB=os.path.join(t, "fstab"))
        p = subprocess.run(["unshare", "--mount", "--propagation", "private",
                            "bash", "-c", MOUNT_SCRIPT], env=env,
                           capture_output=True, text=True, timeout=120)
    out = p.stdout
    assert p.returncode == 0, out + p.stderr
    versions = f"{a.name} {version_of(a)}\n{b.name} {version_of(b)}\n"
    sect = dict(re.findall(r"== (.*?)\n(.*?)(?=== )", out, re.S))
    for how in ("mount -t", "fstab", "direct"):
        s = sect[how]
        first, rest = s.split("\n", 1)
        fstype, source, opts = first.split()
        assert (fstype, source) == ("fuse.hvfs", f"qmp-dir:{qmp_dir}"), s
        if how != "direct":
            assert "nosuid" in opts.split(","), s
        if how == "mount -t":
            assert "noatime" in opts.split(","), s
        assert rest == "pid found\n" + versions, s
    bad = sect["bad option"]
    assert "bogus" in bad and "status 0" not in bad, bad
    assert "still mounted" not in bad


def unit_service(path):
    """The [Service] settings of a unit file, as (key, value) in order."""
    items, section = [], None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("["):
                section = line
                continue
            if section == "[Service]":
                k, v = line.split("=", 1)
                items.append((k, v))
    return items


def expand(cmd, env):
    """systemd's expansion: ${VAR} is one word, $VAR splits on spaces; a
    leading '-' (ignore failure) is dropped."""
    words = []
    for w in shlex.split(cmd.lstrip("-")):
        m = re.fullmatch(r"\$(\w+)", w)
        if m:
            words += env.get(m.group(1), "").split()
        else:
            words.append(re.sub(r"\$\{(\w+)\}",
                                lambda m: env.get(m.group(1), ""), w))
    return words


def test_systemd_unit(inst, qmp_dir, vms):
    """The unit is valid for systemd, and its command lines do what the
    unit promises: start in the foreground, unmount on stop, clean up a
    crashed mount so that the restart works."""
    if not inst.unitdir:
        pytest.skip("configured with -Dsystemdunitdir=no")
    unit = inst.path(f"{inst.unitdir}/hvfs.service")
    with open(unit) as f:
        text = f.read()
    hvfs = f"{inst.sbindir}/hvfs"
    assert f"ExecStart={hvfs} -f " in text
    a = vms("ship-unit")
    with tempfile.TemporaryDirectory(prefix="hvfs-unit-") as t:
        # systemd-analyze checks that the binaries exist: point the unit at
        # the DESTDIR copy; man pages from DESTDIR too.
        local = os.path.join(t, "hvfs.service")
        with open(local, "w") as f:
            f.write(text.replace(hvfs, inst.path(hvfs)))
        p = subprocess.run(
            ["systemd-analyze", "verify", local], capture_output=True,
            text=True, env=dict(os.environ,
                                MANPATH=inst.path(inst.mandir)))
        assert (p.returncode, p.stderr) == (0, ""), p.stderr

        svc = unit_service(local)
        keys = dict(svc)
        assert keys["Type"] == "simple"
        assert keys["Restart"] == "on-failure"
        assert "libvirtd.service" in re.search(r"After=(.*)", text).group(1)
        env = {}
        for k, v in svc:
            if k == "Environment":
                env.update(w.split("=", 1) for w in shlex.split(v))
        assert env["HVFS_SOURCE"] == "qemu:///system"
        assert env["HVFS_MOUNTPOINT"] == "/mnt/hv"
        # What /etc/default/hvfs would say for this test.
        mnt = os.path.join(t, "mnt", "hv")
        env.update(HVFS_SOURCE=f"qmp-dir:{qmp_dir}", HVFS_MOUNTPOINT=mnt,
                   HVFS_OPTIONS="-o timeout=3")

        def run(key):
            for k, v in svc:
                if k == key:
                    p = subprocess.run(expand(v, env), capture_output=True,
                                       text=True, timeout=30)
                    if not v.startswith("-"):
                        assert p.returncode == 0, (v, p.stderr)

        def start():
            run("ExecStartPre")
            proc = subprocess.Popen(expand(keys["ExecStart"], env),
                                    stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, text=True)

            def up():
                assert proc.poll() is None, proc.stderr.read()
                return os.path.ismount(mnt)
            wait_for(up, what="the unit's mount")
            with open(os.path.join(mnt, a.name, "version")) as f:
                assert f.read() == version_of(a) + "\n"
            return proc

        proc = start()
        try:
            # systemctl stop: ExecStop, then the main process must be gone
            # on its own (systemd would SIGTERM it), then ExecStopPost.
            run("ExecStop")
            assert proc.wait(timeout=10) == 0, proc.stderr.read()
            assert not os.path.ismount(mnt)
            run("ExecStopPost")

            # A crash leaves a dead mount; ExecStopPost clears it and the
            # restart mounts again.
            proc = start()
            proc.kill()
            proc.wait()
            assert os.path.ismount(mnt)
            run("ExecStopPost")
            assert not os.path.ismount(mnt)
            proc = start()
            proc.send_signal(signal.SIGTERM)  # systemd's default stop
            assert proc.wait(timeout=10) == 0, proc.stderr.read()
            assert not os.path.ismount(mnt)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if os.path.ismount(mnt):
                subprocess.run(["umount", "-l", mnt])
            proc.stderr.close()
