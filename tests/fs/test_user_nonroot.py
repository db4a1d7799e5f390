# SPDX-License-Identifier: GPL-2.0-or-later
"""A user without root mounts their own tree, as the README's commands do.

The test makes an unprivileged user (hvfs-test-user, without a home in
/home: a temporary one is passed as HOME) and gives /dev/fuse the 0666 mode
of a stock Debian host for the module's duration (restored after). The
user starts QEMUs with QMP sockets they own, mounts `hvfs --qmp-dir DIR
~/vms` (fusermount3 does the mount), reads and controls the tree, and
unmounts with `fusermount3 -u`. Root is not let in (no allow_other), and
what needs root fails with a clear message.
"""

import os
import pwd
import socket
import stat
import subprocess
import tempfile

import pytest

from hvtest import HVFS, Qemu, wait_for

USER = "hvfs-test-user"


class User:
    def __init__(self):
        if subprocess.run(["id", USER], capture_output=True).returncode:
            subprocess.run(["useradd", "-M", "-d", "/nonexistent", "-s",
                            "/usr/sbin/nologin", USER], check=True)
        pw = pwd.getpwnam(USER)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        self.home = tempfile.mkdtemp(prefix="hvfs-home-")
        os.chmod(self.home, 0o755)
        os.chown(self.home, self.uid, self.gid)
        self.prefix = ["setpriv", f"--reuid={self.uid}",
                       f"--regid={self.gid}", "--init-groups", "env", "-i",
                       f"HOME={self.home}", "PATH=/usr/bin:/bin"]

    def mkdir(self, name):
        path = os.path.join(self.home, name)
        os.mkdir(path)
        os.chown(path, self.uid, self.gid)
        return path

    def run(self, cmd, check=True, timeout=60):
        """sh -c cmd as the user, in their home."""
        p = subprocess.run([*self.prefix, "sh", "-c", cmd], cwd=self.home,
                           capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        if check and p.returncode:
            raise AssertionError(f"{cmd}: {p.returncode} {p.stderr}")
        return p


@pytest.fixture(scope="module")
def user():
    mode = stat.S_IMODE(os.stat("/dev/fuse").st_mode)
    os.chmod("/dev/fuse", 0o666)
    u = User()
    try:
        yield u
    finally:
        os.chmod("/dev/fuse", mode)
        subprocess.run(["rm", "-rf", u.home])


def mounted(path):
    """Whether path is a mount point (os.path.ismount() stats it, which the
    FUSE mount of another user refuses even to root)."""
    with open("/proc/self/mountinfo") as f:
        return any(x.split()[4] == path for x in f)


def hvfs_pids(mountpoint):
    """Live (not zombie) hvfs processes serving mountpoint."""
    out = []
    for p in os.listdir("/proc"):
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{p}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if argv[0].endswith(b"hvfs") and mountpoint.encode() in argv \
                and state != "Z":
            out.append(int(p))
    return out


def test_user_mounts_own_qmp_tree(user):
    qmp = user.mkdir("qmp")
    vms = user.mkdir("vms")
    a = Qemu(qmp, "vm-a", prefix=user.prefix)
    b = Qemu(qmp, "vm-b", prefix=user.prefix)
    try:
        assert os.stat(a.qmp).st_uid == user.uid
        # The README's command, as the user, in the background; without
        # syslog here, the log goes to the user's runtime directory.
        run = user.mkdir("run")
        p = user.run(f"XDG_RUNTIME_DIR={run} {HVFS} --qmp-dir ~/qmp ~/vms")
        assert mounted(vms), p.stderr
        log = None
        if not os.path.exists("/dev/log"):
            log = f"{run}/hvfs/{vms.strip('/').replace('/', '-')}.log"
            assert f"logging to {log}" in p.stderr, p.stderr
        with open("/proc/self/mountinfo") as f:
            line = next(x for x in f if x.split()[4] == vms)
        assert f"user_id={user.uid}" in line, line
        assert user.run("ls ~/vms").stdout.split() == ["vm-a", "vm-b"]
        assert user.run("cat ~/vms/vm-a/state").stdout == "running\n"
        user.run("echo pause > ~/vms/vm-a/control")
        assert a.status() == "paused"
        if log:
            with open(log) as f:
                assert "wrote control pause: ok" in f.read()
        assert user.run("cat ~/vms/vm-a/state").stdout == "paused\n"
        assert user.run("cat ~/vms/vm-b/state").stdout == "running\n"
        # Files belong to the user who mounted.
        st = user.run("stat -c %u ~/vms/vm-a/state").stdout
        assert st == f"{user.uid}\n"
        # Nobody else gets in, root included (no allow_other).
        with pytest.raises(PermissionError):
            os.listdir(vms)
        pids = hvfs_pids(vms)
        assert len(pids) == 1
        user.run("fusermount3 -u ~/vms")
        assert not mounted(vms)
        wait_for(lambda: hvfs_pids(vms) == [], what="hvfs to exit")
    finally:
        if mounted(vms):
            subprocess.run(["umount", "-l", vms])
        a.kill()
        b.kill()


def test_user_where_root_is_needed(user):
    qmp = user.mkdir("qmp2")
    mnt = user.mkdir("mnt2")
    # allow_other needs user_allow_other in /etc/fuse.conf (root's choice).
    with open("/etc/fuse.conf") as f:
        assert not any(x.strip() == "user_allow_other" for x in f)
    p = user.run(f"{HVFS} -f -o allow_other --qmp-dir {qmp} {mnt}",
                 check=False)
    assert p.returncode != 0
    assert "allow_other" in p.stderr and "fuse.conf" in p.stderr, p.stderr
    assert not mounted(mnt)
    # A mount point the user may not write to.
    root_dir = tempfile.mkdtemp(prefix="hvfs-rootonly-")
    try:
        os.chmod(root_dir, 0o755)
        p = user.run(f"{HVFS} -f --qmp-dir {qmp} {root_dir}", check=False)
        assert p.returncode != 0
        assert root_dir in p.stderr and "no write access" in p.stderr, \
            p.stderr
        assert not mounted(root_dir)
    finally:
        os.rmdir(root_dir)
    # libvirt's system daemon is root's: its socket refuses the user.
    sock = os.path.join(tempfile.mkdtemp(prefix="hvfs-rootsock-"), "sock")
    try:
        s = socket.socket(socket.AF_UNIX)
        s.bind(sock)
        s.listen()
        os.chmod(sock, 0o600)
        os.chmod(os.path.dirname(sock), 0o755)
        p = user.run(f"{HVFS} -f -c 'qemu+unix:///system?socket={sock}' "
                     f"{mnt}", check=False)
        assert p.returncode != 0
        assert "ermission denied" in p.stderr or "EACCES" in p.stderr, \
            p.stderr
        assert not mounted(mnt)
        s.close()
    finally:
        subprocess.run(["rm", "-rf", os.path.dirname(sock)])
