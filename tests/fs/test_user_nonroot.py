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
import socket
import subprocess
import tempfile

import pytest

from hvtest import HVFS, Qemu, hvfs_pids, mounted, wait_for

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
