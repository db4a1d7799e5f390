# SPDX-License-Identifier: GPL-2.0-or-later
"""Helpers for the mounted-tree tests: real QEMU processes, a QMP oracle,
libvirt domains through virsh, and an hvfs mount driven as a shell would."""

import errno
import json
import os
import pwd
import re
import select
import shutil
import socket
import subprocess
import tempfile
import threading
import time

QEMU = shutil.which("qemu-system-x86_64") or "/usr/bin/qemu-system-x86_64"
HVFS = os.environ.get("HVFS_BIN") or os.path.join(
    os.path.dirname(__file__), "..", "..", "build", "fs", "hvfs")
HVMOCK = os.environ.get("HVMOCK_BIN") or os.path.join(
    os.path.dirname(HVFS), "..", "tests", "mock", "hvmock")


def hvfs_sanitized():
    """Whether HVFS is built with AddressSanitizer, whose quarantine and
    shadow memory make resident-set bounds meaningless."""
    with open(HVFS, "rb") as f:
        return b"__asan_init" in f.read()


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on (yet)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(pred, timeout=10.0, what="condition"):
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.02)


class HvMock:
    """A scripted peer of tests/mock run by hvmock in a process of its own:
    kind "qmp" (a QMP monitor playing `script` on every connection, see
    tests/mock/mock-qmp.h) or "libvirt" (a small libvirtd, see
    tests/mock/mock-vrpc.h), listening at `path` once constructed. close()
    stops it and fails the test if the mock saw anything it did not
    expect."""

    def __init__(self, kind, path, script):
        self.path = path
        fd, self.script = tempfile.mkstemp(prefix="hvmock-")
        os.write(fd, script.encode())
        os.close(fd)
        self.lines = []
        self.told = 0
        self.proc = subprocess.Popen([HVMOCK, kind, path, self.script],
                                     stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True,
                                     errors="backslashreplace")
        for line in self.proc.stdout:  # the first connections may come
            if line == "ready\n":         # before it says so
                break
            self.lines.append(line.rstrip("\n"))
        else:
            raise AssertionError(f"hvmock did not start: {self.lines}")
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def _count(self, prefix):
        return sum(1 for line in list(self.lines) if line.startswith(prefix))

    @property
    def accepted(self):
        """Connections accepted so far."""
        return self._count("accepted ")

    def commands(self, name):
        """QMP: how many commands `name` came."""
        return sum(1 for line in list(self.lines)
                   if line == f"command {name}")

    @property
    def faults(self):
        """libvirt: how many faults the mock played."""
        return self._count("fault ")

    def tell(self, line):
        """A line to the running mock: "on RULE", "drop", a libvirt script
        line, "event NAME EVENT DETAIL"."""
        self.told += 1
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        wait_for(lambda: self._count("told") >= self.told,
                 what="hvmock to take " + line[:40])

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(5)
        os.unlink(self.script)
        failed = [line for line in self.lines if line.startswith("failed")]
        assert self.proc.returncode == 0 and not failed, \
            (self.proc.returncode, failed)


class Oracle:
    """A minimal QMP client of our own, on a second monitor of a test VM, to
    check what hvfs did without going through hvfs."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(path)
        self.buf = b""
        greeting = self._read()
        assert "QMP" in greeting, greeting
        self.greeting = greeting
        self.execute("qmp_capabilities")

    def _read(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("oracle: QEMU closed the monitor")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def execute(self, cmd, **args):
        msg = {"execute": cmd}
        if args:
            msg["arguments"] = args
        self.sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            m = self._read()
            if "event" in m:
                continue
            if "error" in m:
                raise RuntimeError(m["error"])
            return m["return"]

    def close(self):
        self.sock.close()


class QemuProcess:
    """A QEMU NAME with two monitors: NAME.qmp in `qmp_dir` for hvfs and
    NAME.oracle for the test; `args` say the rest. Returns once the
    monitors and `more` (paths) exist. `prefix` runs it through a command
    (setpriv: as another user)."""

    def __init__(self, qmp_dir, name, args, more=(), prefix=()):
        self.name = name
        self.qmp = os.path.join(qmp_dir, name + ".qmp")
        self.oracle_path = os.path.join(qmp_dir, name + ".oracle")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [*prefix, QEMU, "-name", name,
             "-qmp", f"unix:{self.qmp},server=on,wait=off",
             "-qmp", f"unix:{self.oracle_path},server=on,wait=off", *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)
        wait_for(lambda: self.proc.poll() is not None or
                 all(map(os.path.exists,
                         (self.qmp, self.oracle_path, *more))),
                 what=f"{name} sockets")
        assert self.proc.poll() is None, self.proc.stderr.read().decode()
        self._oracle = None

    @property
    def oracle(self):
        if self._oracle is None:
            self._oracle = Oracle(self.oracle_path)
        return self._oracle

    def status(self):
        return self.oracle.execute("query-status")["status"]

    def alive(self):
        return self.proc.poll() is None

    def kill(self):
        if self._oracle:
            self._oracle.close()
            self._oracle = None
        if self.alive():
            self.proc.kill()
        self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()


class Qemu(QemuProcess):
    """A bare QEMU (-machine none: no KVM, ~11 MiB)."""

    def __init__(self, qmp_dir, name, extra=(), prefix=()):
        super().__init__(qmp_dir, name,
                         ["-machine", "none", "-nodefaults", "-display",
                          "none", *extra], prefix=prefix)


class Mount:
    """hvfs -f ARGS MOUNTPOINT, unmounted and checked for a clean exit."""

    def __init__(self, *args, timeout=None):
        self.dir = tempfile.mkdtemp(prefix="hvfs-mnt-")
        cmd = [HVFS, "-f"]
        if timeout is not None:
            cmd += ["-o", f"timeout={timeout}"]
        cmd += [*args, self.dir]
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                     stdout=self.log, stderr=self.log)

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError(f"hvfs exited {self.proc.returncode}: "
                                   + self.logtext())
            return os.path.ismount(self.dir)
        wait_for(up, timeout=30, what="the mount")

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    def logtext(self):
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def read(self, *parts):
        with open(self.path(*parts)) as f:
            return f.read()

    def write(self, text, *parts):
        """Writes as `echo text > file` does: O_TRUNC, one write."""
        fd = os.open(self.path(*parts), os.O_WRONLY | os.O_TRUNC)
        try:
            return os.write(fd, text.encode())
        finally:
            os.close(fd)

    def ls(self, *parts):
        """Lists a directory as plain `ls` does: without dotfiles."""
        return sorted(n for n in os.listdir(self.path(*parts))
                      if not n.startswith("."))

    def umount(self):
        if self.proc.poll() is None:
            subprocess.run(["fusermount3", "-u", self.dir], check=False)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        try:
            os.rmdir(self.dir)
        except OSError:
            subprocess.run(["umount", "-l", self.dir], check=False)
        return self.proc.returncode


def errno_of(fn, *args):
    """The errno fn raises, or 0."""
    try:
        fn(*args)
    except OSError as e:
        return e.errno
    return 0


def assert_host_refused(m, bad, good, dom, says, limit=5):
    """Mount m has hosts bad and good, and bad refused us: bad lists
    nothing, its .error and the log say `says` with EACCES, its paths are
    ENOENT; good serves dom meanwhile, 20 reads within limit seconds."""
    assert m.ls(bad) == []
    err = m.read(bad, ".error")
    assert says in err and "EACCES" in err, err
    assert says in m.logtext()
    assert errno_of(m.read, bad, dom, "state") == errno.ENOENT
    t = time.monotonic()
    for _ in range(20):
        assert m.read(good, dom, "state") == "running\n"
    assert time.monotonic() - t < limit


def sh(cmd, check=True):
    """Runs a shell command line; returns (status, stdout, stderr)."""
    p = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"`{cmd}` exited {p.returncode}: {p.stderr}")
    return p.returncode, p.stdout, p.stderr


class Libvirtd:
    """The tests' private libvirtd (tests/libvirtd.sh): never the host's.
    Its directory is $HVFS_TEST_LIBVIRTD when set (tests/run.sh starts one
    there for every suite), else one of this process's own. Attributes:
    uri (qemu+unix with socket=), tcp_uri (qemu+tcp on its loopback port),
    tls_uri (qemu+tls://localhost on its TLS port, pkipath= the client's
    files in pki/client; pki holds the test CA's ca-key.pem and cacert.pem),
    test_uri (its test:///default driver), sock, port; start() and stop()
    start and stop the daemon (its domains keep running, as across a
    service restart); teardown() also destroys its domains and removes its
    directory. With sasl=True the caller has written DIR/sasl2/libvirt.conf
    (and its sasldb) and DIR/auth.conf before start(): the daemon then asks
    for SASL on its read-write UNIX socket and on TCP, and uri and tcp_uri
    carry authfile=DIR/auth.conf."""

    SCRIPT = os.path.join(os.path.dirname(__file__), "..", "libvirtd.sh")

    def __init__(self, dir, sasl=False):
        self.dir = dir
        self.sock = os.path.join(dir, "run", "libvirt-sock")
        self.authfile = os.path.join(dir, "auth.conf") if sasl else None
        self.uri = f"qemu+unix:///system?socket={self.sock}" + (
            f"&authfile={self.authfile}" if sasl else "")
        self.test_uri = f"test+unix:///default?socket={self.sock}"
        self.pki = os.path.join(dir, "pki")

    @property
    def port(self):
        with open(os.path.join(self.dir, "port")) as f:
            return int(f.read())

    @property
    def tcp_uri(self):
        return f"qemu+tcp://127.0.0.1:{self.port}/system" + (
            f"?authfile={self.authfile}" if self.authfile else "")

    @property
    def tls_port(self):
        with open(os.path.join(self.dir, "tls_port")) as f:
            return int(f.read())

    def tls_uri_with(self, pkipath, host="localhost", scheme="qemu+tls"):
        return (f"{scheme}://{host}:{self.tls_port}/system"
                f"?pkipath={pkipath}")

    @property
    def tls_uri(self):
        return self.tls_uri_with(os.path.join(self.pki, "client"))

    def pid(self):
        """The daemon's PID while it runs, else None."""
        try:
            with open(os.path.join(self.dir, "libvirtd.pid")) as f:
                pid = int(f.read())
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (OSError, ValueError):
            return None
        return pid if state != "Z" else None

    def _run(self, verb):
        subprocess.run(["bash", self.SCRIPT, verb, self.dir], check=True,
                       timeout=120)

    def start(self):
        self._run("start")

    def stop(self):
        self._run("stop")

    def teardown(self):
        self._run("teardown")


LIBVIRTD = Libvirtd(os.environ.get("HVFS_TEST_LIBVIRTD") or os.path.join(
    tempfile.gettempdir(), f"hvfs-libvirtd.{os.getpid()}"))


def virsh(*args, uri=None, check=True):
    """virsh -c URI -q ARGS; URI is the private libvirtd's by default."""
    uri = uri or LIBVIRTD.uri
    p = subprocess.run(["virsh", "-c", uri, "-q", *args],
                       capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"virsh {' '.join(args)}: {p.stderr}")
    return p.stdout.strip()


DOMAIN_XML = """<domain type='{type}'>
  <name>{name}</name>
  <memory unit='MiB'>32</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices><emulator>{qemu}</emulator></devices>
</domain>
"""


class Proxy:
    """A TCP listener on 127.0.0.1 that forwards to the private libvirtd's
    TCP port while `up`; when down it refuses nothing but answers nothing (a
    slow host), and before start() nothing listens (an unreachable host).
    cut() drops every connection and closes each new one at once (a lost
    connection, the peer still running) until mend()."""

    def __init__(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        self.up = True
        self.lsock = None
        self.conns = []
        self.stop = False
        self.cutting = False

    def start(self):
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", self.port))
        self.lsock.listen(16)
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while not self.stop:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            if self.cutting:
                c.close()
                continue
            u = socket.create_connection(("127.0.0.1", LIBVIRTD.port))
            self.conns += [c, u]
            threading.Thread(target=self.pump, args=(c, u),
                             daemon=True).start()

    def pump(self, a, b):
        peer = {a: b, b: a}
        while not self.stop:
            try:
                r, _, _ = select.select([a, b], [], [], 0.2)
            except (OSError, ValueError):
                return  # cut() closed them
            for s in r:
                if not self.up:
                    continue  # a wedged host: reads nothing, says nothing
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    a.close()
                    b.close()
                    return
                peer[s].sendall(data)
            if not self.up:
                time.sleep(0.05)

    def cut(self):
        self.cutting = True
        for s in self.conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.conns = []

    def mend(self):
        self.cutting = False

    def close(self):
        self.stop = True
        for s in self.conns + ([self.lsock] if self.lsock else []):
            try:
                s.close()
            except OSError:
                pass


def survives_libvirtd_restart(m, host, name, libvirtd, over):
    """The private libvirtd stops and starts again under mount m: host's
    .error tells, then it clears and the domain name (running) is back
    under host; over names the transport in failure messages."""
    wait_for(lambda: name in m.ls(host), timeout=60,
             what=f"the domains over {over}: " + m.read(host, ".error"))
    libvirtd.stop()
    try:
        wait_for(lambda: m.read(host, ".error") != "", timeout=60,
                 what="the lost connection in .error")
    finally:
        libvirtd.start()
    try:
        wait_for(lambda: m.read(host, ".error") == "" and name in m.ls(host),
                 timeout=90, what=f"the reconnect over {over}")
    except TimeoutError:
        raise AssertionError((m.read(host, ".error"), m.ls(host),
                              m.logtext()[-3000:]))
    assert m.read(host, name, "state") == "running\n"


def define_domain(name, uri=None):
    """Defines a small libvirt domain (no disk: it starts and idles)."""
    kvm = os.access("/dev/kvm", os.R_OK | os.W_OK)
    with tempfile.NamedTemporaryFile("w", suffix=".xml") as f:
        f.write(DOMAIN_XML.format(name=name, qemu=QEMU,
                                  type="kvm" if kvm else "qemu"))
        f.flush()
        virsh("define", f.name, uri=uri)


def remove_domain(name, uri=None):
    virsh("destroy", name, check=False, uri=uri)
    virsh("undefine", name, check=False, uri=uri)


ENOENT, EINVAL, EOPNOTSUPP, EIO = (errno.ENOENT, errno.EINVAL,
                                   errno.EOPNOTSUPP, errno.EIO)


def read_events(fd, want, timeout=10.0, seen=None):
    """Reads JSON lines from fd until want(event) holds; returns it. Every
    event read is appended to `seen` if given."""
    buf = b""
    seen = [] if seen is None else seen
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        r, _, _ = select.select([fd], [], [], max(0, end - time.monotonic()))
        if not r:
            break
        chunk = os.read(fd, 65536)
        assert chunk, "events file ended"
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            ev = json.loads(line)
            seen.append(ev)
            if want(ev):
                return ev
    raise AssertionError(f"no matching event within {timeout} s; saw {seen}")


README = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")


def readme_block(after):
    """The first fenced block of the README after the line `after`."""
    text = open(README).read()
    start = text.index(after)
    m = re.search(r"```\n(.*?)```", text[start:], re.S)
    return m.group(1)


def readme_line(pattern):
    """The README's line that contains `pattern`, comment stripped."""
    for line in open(README).read().splitlines():
        if pattern in line:
            return line.split("  #")[0].strip()
    raise AssertionError(f"README has no line with {pattern!r}")


def as_user(text, mnt, dom):
    """README text made to act on this mount and domain."""
    return text.replace("/mnt/hv", mnt).replace("droplet-1", dom)


USER = "hvfs-test-user"


class User:
    """An unprivileged user (made once, without a home in /home) with a
    temporary home of their own; everything runs as them with only the
    environment in `env` (HOME and PATH; add what a test needs)."""

    def __init__(self):
        if subprocess.run(["id", USER], capture_output=True).returncode:
            subprocess.run(["useradd", "-M", "-d", "/nonexistent", "-s",
                            "/usr/sbin/nologin", USER], check=True)
        pw = pwd.getpwnam(USER)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        self.home = tempfile.mkdtemp(prefix="hvfs-home-")
        os.chmod(self.home, 0o755)
        os.chown(self.home, self.uid, self.gid)
        self.env = {"HOME": self.home, "PATH": "/usr/bin:/bin"}

    @property
    def prefix(self):
        """The command prefix that runs a program as the user."""
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}",
                "--init-groups", "env", "-i",
                *(f"{k}={v}" for k, v in self.env.items())]

    def mkdir(self, name, mode=0o755):
        path = os.path.join(self.home, name)
        os.mkdir(path, mode)
        os.chmod(path, mode)
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


def mounted(path):
    """Whether path is a mount point (os.path.ismount() stats it, which the
    FUSE mount of another user refuses even to root)."""
    with open("/proc/self/mountinfo") as f:
        return any(x.split()[4] == path for x in f)


def proc_state(pid):
    """The state letter of process pid (Z: a zombie), None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def live_pids(pred):
    """Live (not zombie) processes whose argv satisfies pred(argv)."""
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if pred(argv) and proc_state(p) not in (None, "Z"):
            out.append(int(p))
    return out


def hvfs_pids(mountpoint):
    """Live (not zombie) hvfs processes serving mountpoint."""
    return live_pids(lambda argv: argv[0].endswith(b"hvfs") and
                     mountpoint.encode() in argv)
