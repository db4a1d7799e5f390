# SPDX-License-Identifier: GPL-2.0-or-later
"""The daemon and the tree as a user meets them with ordinary tools: shell
commands that try to change names, tail -f and copies of a domain, the
background mode with relative paths, mountpoints that hold something, a
mount copied into another namespace, a monitor another client holds, and
the messages of bad command lines and bad writes (issue 12)."""

import errno
import os
import re
import signal
import socket
import subprocess
import tempfile
import time

from hvtest import HVFS, HvMock, Mount, Qemu, errno_of, sh, wait_for


def bash(cmd, cwd=None, timeout=30):
    p = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True,
                       cwd=cwd, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def proc_state(pid):
    """A process's state letter, or None once it is reaped."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def gone(pid):
    return proc_state(pid) in (None, "Z")


def test_shell_cannot_change_names(qmp_dir, vms, mount):
    vms("vm-a")
    m = mount("--qmp-dir", qmp_dir)
    d = m.path("vm-a")
    expect = {
        "rm state": "Operation not permitted",
        "rm -rf query": "Operation not permitted",
        "rmdir block": "Operation not permitted",
        "mkdir new": "Operation not permitted",
        "mv state s2": "Operation not permitted",
        "ln -s state link": "Operation not permitted",
        "ln state hard": "Operation not permitted",
        "chmod 666 state": "Operation not permitted",
        "touch new": "Permission denied",
        "echo x > new": "Permission denied",
        "sed -i s/a/b/ state": "Permission denied",
        f"mkdir {m.dir}/new": "Operation not permitted",
        f"touch {m.dir}/new": "Permission denied",
    }
    for cmd, msg in expect.items():
        st, _, err = bash(cmd, cwd=d)
        assert st != 0, cmd
        assert msg in err, (cmd, err)
        assert "not implemented" not in err, (cmd, err)
    # Nothing changed.
    assert m.ls("vm-a") == ["block", "console", "control", "cpus", "error",
                            "events",
                            "guest", "memory", "name", "qmp", "query",
                            "screen.png", "snapshots", "state", "stats",
                            "uuid", "vcpus", "version"]
    assert m.read("vm-a", "state") == "running\n"
    # O_CREAT on a file that exists is an ordinary open.
    assert bash(f"echo pause > {d}/control")[0] == 0


def test_tail_f_follows_events(qmp_dir, vms, mount):
    vm = vms("vm-a")
    m = mount("--qmp-dir", qmp_dir)
    cmds = {"tail": ["tail", "-f", m.path("vm-a", "events")],
            "tail-c": ["tail", "-c", "+1", "-f", m.path("vm-a", "events")]}
    tails = {k: subprocess.Popen(c, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
             for k, c in cmds.items()}
    try:
        time.sleep(1.5)  # tail has read to the end and polls
        for p in tails.values():
            assert p.poll() is None, p.stderr.read()
        t0 = time.monotonic()
        sh(f"echo pause > {m.path('vm-a', 'control')}")
        assert vm.status() == "paused"
        line = tails["tail"].stdout.readline()
        dt = time.monotonic() - t0
        assert b'"event":"STOP"' in line, line
        # tail polls once a second; a loaded machine gets a margin.
        assert dt < 3.0, dt
    finally:
        for p in tails.values():
            p.terminate()
        outs = {k: p.communicate(timeout=10) for k, p in tails.items()}
    # tail -c +1 -f buffers what it prints to a pipe, but it follows: it
    # no longer fails with "Illegal seek". No tail complained of anything
    # ("file truncated" would say the size went backwards).
    for k, (out, err) in outs.items():
        assert err == b"", (k, err)


def test_dot_events_tail(qmp_dir, vms, mount):
    vms("vm-a")
    m = mount("--qmp-dir", qmp_dir)
    p = subprocess.Popen(["tail", "-f", m.path(".events")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(1.5)
        sh(f"echo pause > {m.path('vm-a', 'control')}")
        sh(f"echo resume > {m.path('vm-a', 'control')}")
        got = b""
        while b'"RESUME"' not in got:
            line = p.stdout.readline()
            assert line, p.stderr.read()
            got += line
        assert b'"STOP"' in got
    finally:
        p.terminate()
        _, err = p.communicate(timeout=10)
    assert err == b""


def test_copies_of_a_domain_finish(qmp_dir, vms, mount):
    vms("vm-a")
    m = mount("--qmp-dir", qmp_dir)
    out = tempfile.mkdtemp(prefix="hvfs-copy-")
    try:
        # An events reader is open meanwhile, as in real life.
        with open(m.path("vm-a", "events"), "rb", buffering=0):
            t0 = time.monotonic()
            st, _, err = bash(f"timeout 20 cp -r {m.path('vm-a')} {out}/cp")
            assert st != 124, "cp -r hung"
            assert time.monotonic() - t0 < 15
            # cp reads generated files to their end: true contents.
            with open(f"{out}/cp/state") as f:
                assert f.read() == "running\n"
            with open(f"{out}/cp/name") as f:
                assert f.read() == "vm-a\n"
            assert os.path.getsize(f"{out}/cp/events") == 0
            st, _, err = bash(f"timeout 20 tar cf {out}/t.tar -C {m.dir} "
                              "vm-a")
            assert st == 0, err
            st, out_, _ = bash(f"tar tvf {out}/t.tar")
            # tar trusts the size 0 of generated files (documented).
            assert re.search(r" 0 .* vm-a/events$", out_, re.M), out_
            st, _, err = bash(f"timeout 20 rsync -a {m.path('vm-a')} "
                              f"{out}/rs/")
            assert st == 0, err
            assert os.path.getsize(f"{out}/rs/vm-a/events") == 0
            st, _, _ = bash(f"timeout 20 grep -r . {m.path('vm-a')}")
            assert st != 124, "grep -r hung"
    finally:
        subprocess.run(["rm", "-rf", out])


def test_cat_still_follows(qmp_dir, vms, mount):
    vms("vm-a")
    m = mount("--qmp-dir", qmp_dir)
    p = subprocess.Popen(["cat", m.path("vm-a", "events")],
                         stdout=subprocess.PIPE)
    try:
        time.sleep(0.5)
        assert p.poll() is None, "cat ended"
        sh(f"echo pause > {m.path('vm-a', 'control')}")
        assert b'"STOP"' in p.stdout.readline()
    finally:
        p.terminate()
        p.wait()


def daemon_pid(logfile):
    def find():
        with open(logfile) as f:
            mt = re.search(r"hvfs\[(\d+)\]: mounted on", f.read())
        return int(mt.group(1)) if mt else None
    return wait_for(find, what="the daemon's log line")


def test_background_relative_paths(qmp_dir):
    cwd = tempfile.mkdtemp(prefix="hvfs-cwd-")
    os.mkdir(f"{cwd}/mnt")
    qdir = os.path.relpath(qmp_dir, cwd)
    log = f"{cwd}/hvfs.log"
    vms = []
    try:
        p = subprocess.run([HVFS, "-o", f"logfile={log}", "--qmp-dir", qdir,
                            "mnt"], cwd=cwd, capture_output=True, text=True,
                           timeout=30)
        assert p.returncode == 0, p.stderr
        mnt = f"{cwd}/mnt"
        assert os.path.ismount(mnt)
        pid = daemon_pid(log)
        # A socket made after the daemon detached still shows up.
        vms.append(Qemu(qmp_dir, "late"))
        wait_for(lambda: "late" in os.listdir(mnt), what="the new domain")
        with open(f"{mnt}/late/state") as f:
            assert f.read() == "running\n"
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: gone(pid), what="the daemon to exit")
        assert not os.path.ismount(mnt)
        assert os.listdir(mnt) == []
        with open(log) as f:
            assert "unmounting" in f.read()
    finally:
        for vm in vms:
            vm.kill()
        subprocess.run(["umount", "-l", f"{cwd}/mnt"], capture_output=True)
        subprocess.run(["rm", "-rf", cwd])


def test_background_log_without_syslog(qmp_dir):
    """Without /dev/log a background daemon says where it logs."""
    mnt = tempfile.mkdtemp(prefix="hvfs-mnt-")
    try:
        p = subprocess.run([HVFS, "--qmp-dir", qmp_dir, mnt],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, p.stderr
        if os.path.exists("/dev/log"):
            assert p.stderr == ""
        else:
            name = mnt.strip("/").replace("/", "-")
            path = f"/run/hvfs/{name}.log"
            assert f"logging to {path}" in p.stderr
            pid = daemon_pid(path)
            os.kill(pid, signal.SIGTERM)
            wait_for(lambda: gone(pid), what="the daemon to exit")
            os.unlink(path)
    finally:
        subprocess.run(["fusermount3", "-u", mnt], capture_output=True)
        wait_for(lambda: not os.path.ismount(mnt), what="unmount")
        os.rmdir(mnt)


def test_mount_over_something_refused(qmp_dir, vms):
    vms("vm-a")
    mnt = tempfile.mkdtemp(prefix="hvfs-mnt-")
    try:
        open(f"{mnt}/precious", "w").close()
        p = subprocess.run([HVFS, "-f", "--qmp-dir", qmp_dir, mnt],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 1
        assert "is not empty; give -o nonempty" in p.stderr
        assert not os.path.ismount(mnt)
        os.unlink(f"{mnt}/precious")
        first = Mount("--qmp-dir", qmp_dir)
        try:
            p = subprocess.run([HVFS, "-f", "--qmp-dir", qmp_dir, first.dir],
                               capture_output=True, text=True, timeout=30)
            assert p.returncode == 1
            assert "is a mount point already" in p.stderr
            assert first.read("vm-a", "state") == "running\n"
        finally:
            assert first.umount() == 0
    finally:
        os.rmdir(mnt)


def test_sigterm_leaves_a_newer_mount_alone(qmp_dir, vms):
    vms("vm-a")
    old = Mount("--qmp-dir", qmp_dir)
    new = None
    try:
        # Asked for: a second mount on top of the first.
        p = subprocess.Popen([HVFS, "-f", "-o", "nonempty", "--qmp-dir",
                              qmp_dir, old.dir], stderr=subprocess.PIPE,
                             text=True)
        new = p
        wait_for(lambda: len([ln for ln in open("/proc/self/mountinfo")
                              if f" {old.dir} " in ln]) == 2,
                 what="the new mount")
        old.proc.send_signal(signal.SIGTERM)
        assert old.proc.wait(timeout=10) == 0
        # The newer mount is still there and serves.
        assert os.path.ismount(old.dir)
        assert "is not ours now: not unmounting it" in old.logtext()
        with open(os.path.join(old.dir, "vm-a", "name")) as f:
            assert f.read() == "vm-a\n"
    finally:
        if new:
            subprocess.run(["fusermount3", "-u", old.dir])
            new.wait(timeout=10)
        subprocess.run(["umount", "-l", old.dir], capture_output=True)
        os.rmdir(old.dir)


def test_mount_copied_to_another_namespace(qmp_dir, vms):
    vm = vms("vm-a")
    m = Mount("--qmp-dir", qmp_dir)
    holder = None
    try:
        assert m.read("vm-a", "state") == "running\n"
        # Another mount namespace holds a copy of the mount.
        holder = subprocess.Popen(["unshare", "--mount", "--propagation",
                                   "private", "sleep", "120"])
        own_ns = os.readlink("/proc/self/ns/mnt")

        def copied():
            # Until unshare() ran, the holder shows our own namespace.
            return os.readlink(f"/proc/{holder.pid}/ns/mnt") != own_ns and \
                any(f" {m.dir} " in ln
                    for ln in open(f"/proc/{holder.pid}/mountinfo"))
        wait_for(copied, what="the copy")
        subprocess.run(["fusermount3", "-u", m.dir], check=True)
        # The daemon leaves, and lets go of the monitors.
        assert m.proc.wait(timeout=10) == 0, m.logtext()
        assert "left this mount namespace" in m.logtext()
        # A new mount of the same sources at the same path gets them.
        again = subprocess.Popen([HVFS, "-f", "-o", "timeout=2", "--qmp-dir",
                                  qmp_dir, m.dir], stderr=subprocess.PIPE)
        try:
            wait_for(lambda: os.path.ismount(m.dir), what="the new mount")
            with open(os.path.join(m.dir, "vm-a", "state")) as f:
                assert f.read() == "running\n"
            sh(f"echo pause > {m.path('vm-a', 'control')}")
            assert vm.status() == "paused"
        finally:
            subprocess.run(["fusermount3", "-u", m.dir])
            assert again.wait(timeout=10) == 0
    finally:
        if holder:
            holder.kill()
            holder.wait()
        m.umount()


def test_monitor_held_by_another_client(qmp_dir, vms, mount):
    vm = vms("vm-a")
    # Another client (another hvfs, a script) holds hvfs's monitor.
    other = socket.socket(socket.AF_UNIX)
    other.connect(vm.qmp)
    try:
        assert b"QMP" in other.recv(65536)
        m = mount("--qmp-dir", qmp_dir, timeout=1)
        assert errno_of(m.read, "vm-a", "state") == errno.ETIMEDOUT
        err = m.read("vm-a", "error")
        assert "monitor busy: another client holds it (is another hvfs " \
            "running?) (ETIMEDOUT)" in err, err
    finally:
        other.close()


def test_command_line_and_messages(qmp_dir):
    mnt = tempfile.mkdtemp(prefix="hvfs-mnt-")
    try:
        p = subprocess.run([HVFS, "--qmp", "a", mnt], capture_output=True,
                           text=True, timeout=30)
        assert p.returncode == 2
        assert "expected NAME=unix:PATH or NAME=tcp:HOST:PORT" in p.stderr
        # A start-up failure says the source once, on one line.
        p = subprocess.run([HVFS, "-f", "--qmp-dir", f"{qmp_dir}/nope", mnt],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 1
        assert p.stderr.count("qmp-dir:") == 1, p.stderr
        assert f"connect qmp-dir:{qmp_dir}/nope: No such file or " \
            "directory (ENOENT)\n" in p.stderr
        assert "\n\n" not in p.stderr
    finally:
        os.rmdir(mnt)


def test_unresolvable_host(mount):
    m = mount("--qmp", "far=tcp:nosuchhost.invalid:4444")
    assert errno_of(m.read, "far", "state") == errno.ENXIO
    err = m.read("far", "error")
    assert "the host name nosuchhost.invalid does not resolve (ENXIO)" in err
    assert "No route to host" not in err


def test_control_messages_and_two_lines(qmp_dir, vms, mount):
    vm = vms("vm-a")
    m = mount("--qmp-dir", qmp_dir)
    ctl = m.path("vm-a", "control")
    st, _, err = bash(f"echo bogus > {ctl}")
    assert st != 0 and "Invalid argument" in err
    assert 'unknown verb "bogus" (EINVAL)' in m.read("vm-a", "error")
    # One write of two lines runs nothing.
    st, _, err = bash(f"env printf 'pause\\nresume\\n' > {ctl}")
    assert st != 0 and "Invalid argument" in err
    assert vm.status() == "running"
    # bash's builtin echo writes line by line: the first verb runs, the
    # second write on the same open file is refused and runs nothing.
    st, _, err = bash(f"echo -e 'pause\\nresume' > {ctl}")
    assert st != 0 and "write error: Invalid argument" in err, err
    assert vm.status() == "paused"
    assert "one verb per open" in m.read("vm-a", "error")
    # Each open still takes its verb.
    sh(f"echo resume > {ctl}")
    assert vm.status() == "running"


def test_silent_monitor_is_not_called_held(mount):
    """A monitor that accepts hvfs itself and never greets is hung, not held
    by another client."""
    d = tempfile.mkdtemp(prefix="hvfs-silent-")
    path = f"{d}/silent.qmp"
    mock = HvMock("qmp", path, "hold\n")
    try:
        m = mount("--qmp", f"silent=unix:{path}", timeout=1)
        assert errno_of(m.read, "silent", "state") == errno.ETIMEDOUT
        assert mock.accepted >= 1
        err = m.read("silent", "error")
        assert "no greeting in time (monitor busy or hung)" in err, err
        assert "another client" not in err
    finally:
        mock.close()
        subprocess.run(["rm", "-rf", d])
