# SPDX-License-Identifier: GPL-2.0-or-later
"""qemu:///session: a user's own libvirt daemon, mounted by that user.

The test makes the unprivileged user of test_user_nonroot (hvfs-test-user,
/dev/fuse 0666 as on a stock host) and starts, as that user, their session
daemon: virtqemud when installed, else libvirtd, in the foreground, with
HOME, XDG_RUNTIME_DIR, XDG_CONFIG_HOME and XDG_CACHE_HOME in a temporary
home (so it never touches the host's /run/libvirt or its daemons; as that
user it could not). LIBVIRT_AUTOSTART=0 keeps virsh from starting a daemon
of its own. The user defines TCG domains with virsh, mounts with the
README's command, and the tree is checked against `virsh -c qemu:///session`
run as the same user: listing, state, uuid, xml, screen.png, control and
events; then the daemon restarts under the mount, and the mount comes back,
also when the daemon's socket moves to virtqemud's name. Without a daemon,
the mount fails and says which socket and whose daemon.
"""

import os
import shutil
import signal
import socket
import struct
import subprocess

import pytest

from hvtest import (DOMAIN_XML, HVFS, QEMU, hvfs_pids, live_pids, mounted,
                    read_events, readme_line, wait_for)

URI = "qemu:///session"
# TCG on a loaded 2-core machine: a domain start takes seconds.
SLOW = 60

class Session:
    """The user's session daemon in their temporary home."""

    def __init__(self, user):
        self.user = user
        home = user.home
        self.rt = user.mkdir("run", 0o700)
        user.mkdir(".config")
        user.mkdir(".config/libvirt")
        user.mkdir(".cache")
        user.env.update(XDG_RUNTIME_DIR=self.rt,
                        XDG_CONFIG_HOME=f"{home}/.config",
                        XDG_CACHE_HOME=f"{home}/.cache",
                        LIBVIRT_AUTOSTART="0",
                        PATH="/usr/sbin:/usr/bin:/bin")
        self.name = "virtqemud" if shutil.which(
            "virtqemud", path="/usr/sbin:/usr/bin") else "libvirtd"
        self.log = f"{home}/daemon.log"
        self.proc = None
        self.configure()

    def configure(self, sock_dir=None):
        """Writes the daemon's configuration, for its next start: its
        sockets in sock_dir (unix_sock_dir) if given, else in the runtime
        directory."""
        conf = f"{self.user.home}/.config/libvirt"
        main = f'log_outputs = "3:file:{self.log}"\n'
        if sock_dir:
            main += f'unix_sock_dir = "{sock_dir}"\n'
        # QEMU's output to files: the session's virtlogd is not wanted.
        for name, text in (("qemu.conf", 'stdio_handler = "file"\n'),
                           (f"{self.name}.conf", main)):
            with open(f"{conf}/{name}", "w") as f:
                f.write(text)
            os.chown(f"{conf}/{name}", self.user.uid, self.user.gid)
        self.sock = (sock_dir or f"{self.rt}/libvirt") + "/" + (
            "virtqemud-sock" if self.name == "virtqemud" else "libvirt-sock")

    def answers(self):
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(self.sock)
            return True
        except OSError:
            return False
        finally:
            s.close()

    def start(self):
        out = open(f"{self.user.home}/daemon.out", "a")
        self.proc = subprocess.Popen(
            [*self.user.prefix, self.name], cwd=self.user.home, stdout=out,
            stderr=out, stdin=subprocess.DEVNULL, start_new_session=True)
        out.close()

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited: " +
                                     open(f"{self.user.home}/daemon.out")
                                     .read()[-2000:])
            return self.answers()
        wait_for(up, timeout=SLOW, what=f"the session {self.name}")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=SLOW)
        assert not self.answers()

    def state(self, name):
        """virsh's state in the tree's words ("shut off" is shutoff)."""
        return self.virsh("domstate", name).replace(" ", "")

    def virsh(self, *args, check=True):
        p = self.user.run(f"virsh -c {URI} -q " + " ".join(args),
                          check=check, timeout=SLOW)
        return p.stdout.strip()

    def define(self, name):
        path = f"{self.user.home}/{name}.xml"
        with open(path, "w") as f:
            # TCG, with a display for screen.png.
            f.write(DOMAIN_XML.format(name=name, qemu=QEMU, type="qemu")
                    .replace("</devices>",
                             "<video><model type='vga'/></video></devices>"))
        os.chmod(path, 0o644)
        self.virsh("define", path)

    def qemus(self):
        """This home's QEMU processes, alive."""
        return live_pids(lambda argv: argv[0].endswith(b"qemu-system-x86_64")
                         and any(self.user.home.encode() in a for a in argv))

    def close(self):
        if self.proc and self.proc.poll() is None:
            for name in self.virsh("list", "--name", check=False).split():
                self.virsh("destroy", name, check=False)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=SLOW)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # QEMUs the daemon left (it never leaves one when it stops well).
        for pid in self.qemus():
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def session(user):
    s = Session(user)
    try:
        s.start()
        s.define("sess-on")
        s.define("sess-off")
        s.virsh("start", "sess-on")
        yield s
    finally:
        s.close()


@pytest.fixture
def vms(session):
    """~/vms mounted by the user with the README's command; unmounted with
    fusermount3 -u at the end, the daemon gone."""
    user = session.user
    path = f"{user.home}/vms"
    if not os.path.isdir(path):
        user.mkdir("vms")
    line = readme_line(URI)
    assert line.endswith(" ~/vms"), line
    p = user.run(line.replace("hvfs", HVFS, 1), timeout=SLOW)
    assert mounted(path), p.stderr
    yield path
    user.run("fusermount3 -u ~/vms")
    assert not mounted(path)
    wait_for(lambda: hvfs_pids(path) == [], what="hvfs to exit")


def cat(user, *parts):
    return user.run("cat ~/vms/" + "/".join(parts)).stdout


def image_size(data):
    """Width and height of a PNG or a PPM (virsh writes what the daemon
    sends: PNG from QEMU 7.1 on, else PPM)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return struct.unpack(">II", data[16:24])
    magic, w, h = data.split(maxsplit=3)[:3]
    assert magic == b"P6", data[:16]
    return int(w), int(h)


def test_session_tree_matches_virsh(session, vms):
    user = session.user
    names = session.virsh("list", "--all", "--name").split()
    assert sorted(names) == ["sess-off", "sess-on"]
    assert user.run("ls ~/vms").stdout.split() == sorted(names)
    for name in names:
        assert cat(user, name, "state") == session.state(name) + "\n"
        assert cat(user, name, "uuid") == session.virsh("domuuid", name) \
            + "\n"
    assert cat(user, "sess-off", "xml").strip() == \
        session.virsh("dumpxml", "sess-off")
    assert cat(user, "sess-on", "xml").strip() == \
        session.virsh("dumpxml", "sess-on")
    # The screen: a PNG of what virsh's screenshot shows.
    user.run("cp ~/vms/sess-on/screen.png ~/screen.png")
    session.virsh("screenshot", "sess-on", f"{user.home}/screen.virsh")
    with open(f"{user.home}/screen.png", "rb") as f:
        png = f.read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n", png[:16]
    with open(f"{user.home}/screen.virsh", "rb") as f:
        assert image_size(png) == image_size(f.read())
    # The files are the user's; nobody else gets in, root included.
    assert user.run("stat -c %u ~/vms/sess-on/state").stdout == \
        f"{user.uid}\n"
    with pytest.raises(PermissionError):
        os.listdir(vms)


def test_session_is_a_users_default(session):
    """Without a source, a user's hvfs mounts their session daemon, as
    virsh without -c reaches it."""
    user = session.user
    mnt = f"{user.home}/default"
    if not os.path.isdir(mnt):
        user.mkdir("default")
    user.run(f"{HVFS} ~/default", timeout=SLOW)
    try:
        assert mounted(mnt)
        assert user.run("ls ~/default").stdout.split() == sorted(
            user.run("virsh -q list --all --name").stdout.split())
        assert user.run("virsh uri").stdout.strip() == URI
    finally:
        user.run("fusermount3 -u ~/default")
    assert not mounted(mnt)


def test_session_control_and_events(session, vms):
    user = session.user
    # A reader of the domain's events, as the user: says "open" once the
    # file is open, then copies the events.
    reader = subprocess.Popen(
        [*user.prefix, "sh", "-c",
         "exec 3<~/vms/sess-on/events; echo open; exec cat <&3"],
        cwd=user.home, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
        bufsize=0)
    try:
        fd = reader.stdout.fileno()
        assert os.read(fd, 5) == b"open\n"

        def control(word, state):
            user.run(f"echo {word} > ~/vms/sess-on/control", timeout=SLOW)
            assert session.state("sess-on") == state
            ev = read_events(fd, lambda e: e.get("kind") == "state" and
                             e["state"] == state, timeout=SLOW)
            assert ev["domain"] == "sess-on", ev
            assert cat(user, "sess-on", "state") == state + "\n"
        control("pause", "paused")
        control("resume", "running")
        control("destroy", "shutoff")
    finally:
        reader.kill()
        reader.wait()
    assert cat(user, "sess-on", "state") == "shutoff\n"
    user.run("echo start > ~/vms/sess-on/control", timeout=SLOW)
    assert session.state("sess-on") == "running"
    wait_for(lambda: cat(user, "sess-on", "state") == "running\n",
             timeout=SLOW, what="the start in state")
    # What the user did, virsh did not have to: nothing else changed.
    assert session.state("sess-off") == "shutoff"


def test_session_daemon_restarts(session, vms):
    user = session.user
    assert cat(user, "sess-on", "state") == "running\n"
    session.stop()
    # The lost daemon, said where the user looks, with the socket named.
    wait_for(lambda: cat(user, ".error") != "", timeout=SLOW,
             what="the lost daemon in .error")
    err = cat(user, ".error")
    assert f"{session.rt}/libvirt/" in err, err
    assert "session daemon" in err, err
    p = user.run("cat ~/vms/sess-on/state", check=False)
    assert p.returncode == 1 and "Connection refused" in p.stderr, p.stderr
    # Its QEMU lives on without it, as across any daemon restart.
    assert len(session.qemus()) == 1
    session.start()
    wait_for(lambda: cat(user, ".error") == "" and
             user.run("ls ~/vms").stdout.split() == ["sess-off", "sess-on"],
             timeout=SLOW, what="the reconnect")
    assert cat(user, "sess-on", "state") == "running\n"
    assert cat(user, "sess-on", "xml").strip() == \
        session.virsh("dumpxml", "sess-on")
    user.run("echo pause > ~/vms/sess-on/control", timeout=SLOW)
    assert session.state("sess-on") == "paused"
    session.virsh("resume", "sess-on")
    wait_for(lambda: cat(user, "sess-on", "state") == "running\n",
             timeout=SLOW, what="the resume event after the restart")


def test_session_follows_a_move_to_split_daemons(session, vms):
    """The host moves to split daemons under the mount: virtqemud's socket
    appears and libvirtd's goes. The next connect takes virtqemud's, as
    libvirt's client does at each open. (The daemon here moves its socket
    and virtqemud-sock links to it: the same socket as far as a client can
    tell, and the test needs no virtqemud installed.)"""
    user = session.user
    split = user.mkdir("split", 0o700)
    direct = f"{session.rt}/libvirt/virtqemud-sock"
    legacy = f"{session.rt}/libvirt/libvirt-sock"
    assert cat(user, "sess-on", "state") == "running\n"
    session.stop()
    session.configure(sock_dir=split)
    try:
        session.start()
        os.symlink(session.sock, direct)
        assert not os.path.exists(legacy)
        assert session.virsh("uri") == URI
        wait_for(lambda: cat(user, ".error") == "" and
                 user.run("ls ~/vms").stdout.split() == ["sess-off",
                                                         "sess-on"],
                 timeout=SLOW, what="the reconnect to virtqemud-sock")
        assert cat(user, "sess-on", "state") == session.state("sess-on") \
            + "\n"
        user.run("echo pause > ~/vms/sess-on/control", timeout=SLOW)
        assert session.state("sess-on") == "paused"
        user.run("echo resume > ~/vms/sess-on/control", timeout=SLOW)
        assert session.state("sess-on") == "running"
    finally:
        session.stop()
        os.unlink(direct)
        session.configure()
        session.start()


def test_session_without_daemon(session):
    """A user whose session daemon does not run: the mount fails (one
    source that cannot be reached at start, hvfs(8)) and says which socket
    and whose daemon; hvfs never starts one, unlike virsh without
    LIBVIRT_AUTOSTART=0."""
    user = session.user
    rt = user.mkdir("run-empty", 0o700)
    mnt = user.mkdir("vms-empty")
    p = user.run(f"XDG_RUNTIME_DIR={rt} {HVFS} -c {URI} {mnt}",
                 check=False, timeout=SLOW)
    assert p.returncode == 1, p.stderr
    assert not mounted(mnt)
    assert f"{rt}/libvirt/libvirt-sock: No such file or directory" in \
        p.stderr, p.stderr
    assert "session daemon" in p.stderr and "ECONNREFUSED" in p.stderr, \
        p.stderr
    # Nothing was started there: only hvfs's log, when there is no syslog.
    assert os.listdir(rt) in ([], ["hvfs"]), os.listdir(rt)
    assert hvfs_pids(mnt) == []
