# SPDX-License-Identifier: GPL-2.0-or-later
"""The tree as an operator uses it: only the ordinary tools (ls -lR, find,
grep, grep -r, cat, head, tail -f, cp -r, tar, rsync -a, python, jq, watch,
poll) and the README's and hvfs(8)'s own commands, over real QEMUs and the
tests' libvirtd, with a hung VM, a dying VM and a restarting libvirtd in the
mix. Every check is what a user expects of the tool, not of hvfs."""

import json
import os
import select
import signal
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import remove_prefixed
from hvtest import HVFS, as_user, readme_block, virsh, wait_for

PREFIX = "hvt-tools-"
TIMEOUT = 2          # -o timeout of the mounts here
MARGIN = 2.5         # what a loaded 2-core machine may add to a deadline


@pytest.fixture(scope="module")
def clean(libvirtd):
    remove_prefixed(PREFIX)
    yield
    remove_prefixed(PREFIX)


def run(cmd, timeout=60):
    """Runs a shell command line as a user would; (status, out, err, secs)."""
    t0 = time.monotonic()
    p = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True,
                       timeout=timeout)
    return p.returncode, p.stdout, p.stderr, time.monotonic() - t0


@pytest.fixture
def fleet(clean, libvirtd, vms, mount, domains):
    """Three bare QEMUs (vm-a, vm-b, vm-c) and a libvirt domain, in one
    mount with -o timeout=2."""
    qmp_dir = os.path.dirname(vms("vm-a").qmp)
    vm = {"vm-a": None, "vm-b": vms("vm-b"), "vm-c": vms("vm-c")}
    lv = domains("x")
    m = mount("-c", libvirtd.uri, "--qmp-dir", qmp_dir, timeout=TIMEOUT)
    wait_for(lambda: m.ls() == sorted([lv, "vm-a", "vm-b", "vm-c"]),
             what="every domain in the tree")
    return m, vm, lv


def test_tools_over_a_hung_and_a_dying_vm(fleet):
    m, vm, lv = fleet
    mnt = m.dir
    st, out, _, _ = run(f"grep . {mnt}/*/state")
    assert st == 0
    assert sorted(out.splitlines()) == sorted(
        f"{mnt}/{d}/state:running" for d in ["vm-a", "vm-b", "vm-c", lv])

    os.kill(vm["vm-b"].proc.pid, signal.SIGSTOP)

    # A reader of the hung VM fails within its deadline, with the errno
    # the shell spells out.
    st, _, err, secs = run(f"cat {mnt}/vm-b/query/status")
    assert st == 1 and "Connection timed out" in err, err
    assert secs < TIMEOUT + MARGIN

    # ls -lR and find walk the whole tree: they finish, and list the
    # healthy domains whole, while the hung one's dynamic directories
    # fail.
    st, out, err, secs = run(f"ls -lR {mnt}", timeout=120)
    assert f"{mnt}/vm-a/query:" in out and "status" in out, err
    assert f"{mnt}/{lv}:" in out
    assert secs < 60, f"ls -lR took {secs:.1f} s"
    st, out, err, _ = run(f"find {mnt} -name state | sort", timeout=120)
    # Each domain's state, and its guest agent's (guest/state).
    assert sorted(out.split()) == sorted(
        f"{mnt}/{d}/{f}" for d in ["vm-a", "vm-b", "vm-c", lv]
        for f in ("state", "guest/state"))

    # grep -r over a healthy domain finds its facts and ends.
    st, out, err, secs = run(f"grep -r . {mnt}/vm-a", timeout=60)
    assert f"{mnt}/vm-a/state:running" in out.splitlines(), (out, err)
    assert f"{mnt}/vm-a/name:vm-a" in out.splitlines()

    # head, python and jq read what they expect.
    st, out, _, _ = run(f"head -c 7 {mnt}/{lv}/xml")
    assert st == 0 and out == "<domain"
    st, out, _, _ = run(f"jq -r .status {mnt}/vm-a/query/status")
    assert st == 0 and out == "running\n"
    st, out, err, _ = run(
        "/usr/bin/python3 -c 'import json, sys; "
        "print(json.load(open(sys.argv[1]))[\"running\"])' "
        f"{mnt}/vm-a/query/status")
    assert st == 0 and out == "True\n", err

    # A VM that dies while a user walks the tree: the walk ends, the
    # mount lives on, the dead VM is off or gone.
    stop = threading.Event()
    walks = []

    def walk():
        while not stop.is_set():
            walks.append(run(f"ls -lR {mnt} >/dev/null", timeout=120)[0])
    t = threading.Thread(target=walk)
    t.start()
    time.sleep(0.5)
    vm["vm-c"].proc.kill()
    vm["vm-c"].proc.wait()
    time.sleep(1.5)
    stop.set()
    t.join(timeout=150)
    assert not t.is_alive() and walks
    wait_for(lambda: "vm-c" not in m.ls() or
             m.read("vm-c", "state") == "shutoff\n", timeout=5,
             what="vm-c off or gone")
    assert m.read("vm-a", "state") == "running\n"

    # Copies of a healthy domain end, with its facts inside.
    dest = tempfile.mkdtemp(prefix="hvfs-copy-")
    try:
        st, _, err, _ = run(f"cp -r {mnt}/vm-a {dest}/cp", timeout=60)
        with open(f"{dest}/cp/state") as f:
            assert f.read() == "running\n", err
        with open(f"{dest}/cp/name") as f:
            assert f.read() == "vm-a\n"
        st, out, err, _ = run(f"tar cf {dest}/a.tar -C {mnt} vm-a && "
                              f"tar tf {dest}/a.tar", timeout=60)
        assert "vm-a/state" in out.split(), err
        st, _, err, _ = run(f"rsync -a {mnt}/vm-a/ {dest}/rs/", timeout=60)
        assert os.path.exists(f"{dest}/rs/state"), err
    finally:
        subprocess.run(["rm", "-rf", dest])

    # The hung VM comes back once it runs again.
    os.kill(vm["vm-b"].proc.pid, signal.SIGCONT)
    wait_for(lambda: run(f"cat {mnt}/vm-b/query/status")[0] == 0,
             timeout=10, what="vm-b to answer again")
    assert run(f"jq -r .status {mnt}/vm-b/query/status")[1] == "running\n"


def test_tail_f_and_poll_follow_changes(fleet):
    m, vm, lv = fleet
    tail = subprocess.Popen(["tail", "-f", m.path(".events")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(1)
        # poll() on state, as fs-layout.md says: POLLPRI at a change.
        fd = os.open(m.path("vm-a", "state"), os.O_RDONLY)
        try:
            os.read(fd, 100)
            p = select.poll()
            p.register(fd, select.POLLPRI)
            assert run(f"echo pause > {m.path('vm-a', 'control')}")[0] == 0
            assert p.poll(5000), "no POLLPRI after pause"
            os.lseek(fd, 0, os.SEEK_SET)
            assert os.read(fd, 100) == b"paused\n"
        finally:
            os.close(fd)
        virsh("suspend", lv)
        want = {("vm-a", "paused"), (lv, "paused")}
        seen = set()
        buf = b""
        end = time.monotonic() + 10
        while want - seen and time.monotonic() < end:
            r, _, _ = select.select([tail.stdout], [], [], 0.5)
            if r:
                buf += os.read(tail.stdout.fileno(), 65536)
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                ev = json.loads(line)
                if ev.get("kind") == "state":
                    seen.add((ev["domain"], ev["state"]))
        assert want <= seen, seen
    finally:
        tail.kill()
        tail.wait()


def test_readme_fleet_examples(clean, libvirtd, domains, mount):
    """The README's "Script a fleet" lines, as written, over two hosts
    (the tests' libvirtd through its UNIX socket as a, through TCP as b)."""
    d1, d2 = domains("f1"), domains("f2")
    block = readme_block("Script a fleet")
    lines = block.splitlines()
    assert lines[0].startswith("hvfs -c a=")
    m = mount("-c", f"a={libvirtd.uri}", "-c", f"b={libvirtd.tcp_uri}")
    mnt = m.dir
    script = as_user("\n".join(lines[1:]), mnt, d1)

    st, out, err, _ = run(script, timeout=60)
    assert st == 0, err
    # One line per domain and host: path, state, QEMU version; then the
    # pause loop; then `cat /mnt/hv/*/.error`, empty with both hosts up.
    rows = sorted(r.split() for r in out.splitlines())
    assert [r[:2] for r in rows] == sorted(
        [f"{mnt}/{h}/{d}/", "running"] for h in "ab" for d in (d1, d2))
    assert all(len(r) == 3 and r[2][0].isdigit() for r in rows), rows
    # The pause loop paused b's running domains, which are a's too.
    for d in (d1, d2):
        assert virsh("domstate", d) == "paused"
    st, out, _, _ = run(f"cat {mnt}/*/.error")
    assert st == 0 and out == ""

    # watch -n1 'grep . /mnt/hv/*/state' (README, "Watch states"), in a
    # terminal as watch wants one; here the states sit one level lower.
    # script(1) runs the line with $SHELL, or sh when it is unset (as in
    # CI): there timeout must stay in the terminal's foreground group, or
    # watch, a background job, stops on its first tcsetattr (SIGTTOU).
    # A terminal has a TERM; CI's environment may not.
    cmd = as_user(readme_block("Watch states").splitlines()[0]
                  .split("  #")[0].strip(), f"{mnt}/b", d1)
    st, out, err, _ = run(f"env -u SHELL TERM=xterm script -qec "
                          f"\"timeout --foreground 3 {cmd}\" /dev/null",
                          timeout=30)
    assert f"{mnt}/b/{d1}/state:paused" in out, (out, err)


def test_man_page_example_in_the_background(clean, libvirtd, domains):
    """hvfs(8)'s first example, as written, without -f: mount, cat every
    state, powerdown, unmount; the daemon then ends."""
    d = domains("bg")
    mnt = tempfile.mkdtemp(prefix="hvfs-mnt-")
    try:
        st, _, err, _ = run(f"{HVFS} {libvirtd.uri} {mnt}", timeout=30)
        assert st == 0, err
        assert os.path.ismount(mnt)
        st, out, _, _ = run(f"cat {mnt}/*/state")
        assert st == 0 and out == "running\n"
        st, _, err, _ = run(f"echo powerdown > {mnt}/{d}/control")
        assert st == 0, err
        pid = int(subprocess.run(["pgrep", "-f", f"^{HVFS} .*{mnt}$"],
                                 capture_output=True, text=True)
                  .stdout.split()[0])
        st, _, err, _ = run(f"fusermount3 -u {mnt}")
        assert st == 0, err

        def ended():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    return f.read().rsplit(")", 1)[1].split()[0] == "Z"
            except OSError:
                return True
        wait_for(ended, timeout=10, what="the daemon to end")
    finally:
        subprocess.run(["umount", "-l", mnt], stderr=subprocess.DEVNULL)
        os.rmdir(mnt)


def test_libvirtd_restarts_under_a_user(clean, libvirtd, vms, mount,
                                        domains):
    """A user reads on while the tests' libvirtd restarts: the direct VMs
    answer as before, the libvirt domain fails within the deadline and
    serves again once the daemon is back."""
    qmp_dir = os.path.dirname(vms("vm-a").qmp)
    d = domains("rs")
    m = mount("-c", libvirtd.uri, "--qmp-dir", qmp_dir, timeout=TIMEOUT)
    wait_for(lambda: d in m.ls(), what=d)
    libvirtd.stop()
    try:
        st, out, _, secs = run(f"cat {m.dir}/vm-a/state "
                               f"{m.dir}/vm-a/version")
        assert st == 0 and out.startswith("running\n")
        assert secs < 1.5
        st, _, err, secs = run(f"cat {m.dir}/{d}/xml")
        assert st == 1 and secs < TIMEOUT + MARGIN, err
        st, out, _, _ = run(f"cat {m.dir}/.error")
        assert out.strip(), "host .error is empty while libvirtd is down"
    finally:
        libvirtd.start()
    wait_for(lambda: run(f"head -c 7 {m.dir}/{d}/xml")[1] == "<domain",
             timeout=20, what="the domain to serve again")
    # .error says what is wrong now: it empties once a listing worked
    # again, which the worker does soon after it reconnected.
    wait_for(lambda: run(f"cat {m.dir}/.error")[1] == "", timeout=15,
             what="the host's .error to empty")
