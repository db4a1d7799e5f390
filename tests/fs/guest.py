# SPDX-License-Identifier: GPL-2.0-or-later
"""The tests' real Linux guest (tests/guest/build.sh): a bare QEMU of it in a
qmp-dir (Guest), and a libvirt domain of it (domain_xml, DomainGuest).

A bare guest NAME in DIR has, beside hvfs's monitor DIR/NAME.qmp:
  DIR/NAME.oracle  a second QMP monitor for the test
  DIR/NAME.qga     the guest agent's virtio-serial port (org.qemu.guest_agent.0)
  DIR/NAME.serial  the serial console (a socket server; input typed there
                   runs in the guest's shell)
  DIR/NAME.log     everything the guest wrote on its console, for wait_ready()
It runs under TCG (the tests never depend on KVM) and prints READY on its
console when its agent runs. It has a pvpanic device: `echo c >
/proc/sysrq-trigger` on its console makes QEMU report GUEST_PANICKED."""

import json
import os
import re
import socket
import subprocess
import tempfile
import time
from xml.sax.saxutils import escape

from hvtest import QEMU, QemuProcess, virsh, wait_for

READY = "hvfs-guest ready"
HERE = os.path.dirname(os.path.abspath(__file__))
BUILD = os.path.join(HERE, "..", "guest", "build.sh")
# Under TCG on a loaded 2-core host; measured 3-10 s.
BOOT_TIMEOUT = 90


def guest_files():
    """(vmlinux, initrd): from $HVFS_GUEST_DIR when it holds them (CI builds
    them there), else built or taken from build.sh's cache."""
    d = os.environ.get("HVFS_GUEST_DIR")
    if not d or not os.path.exists(os.path.join(d, "initrd")):
        d = d or os.path.join(os.environ.get("TMPDIR", "/tmp"),
                              "hvfs-test-guest-out")
        subprocess.run(["sh", BUILD, d], check=True,
                       stdout=subprocess.DEVNULL)
    return os.path.join(d, "vmlinux"), os.path.join(d, "initrd")


def cmdline(name, ip="10.0.2.15/24"):
    return (f"console=ttyS0 quiet panic=-1 hvfs.hostname={name} "
            f"hvfs.ip={ip}")


class Guest(QemuProcess):
    """A bare QEMU running the guest, with the sockets above in qmp_dir."""

    def __init__(self, qmp_dir, name, no_shutdown=False, extra=()):
        vmlinux, initrd = guest_files()
        p = lambda ext: os.path.join(qmp_dir, f"{name}.{ext}")
        self.qga, self.serial, self.log = p("qga"), p("serial"), p("log")
        args = ["-accel", "tcg", "-m", "256", "-display", "none",
                "-kernel", vmlinux, "-initrd", initrd,
                "-append", cmdline(name),
                "-chardev", f"socket,id=ser0,path={self.serial},"
                f"server=on,wait=off,logfile={self.log}",
                "-serial", "chardev:ser0",
                "-netdev", "user,id=net0",
                "-device", "virtio-net-pci,netdev=net0",
                "-device", "virtio-serial-pci",
                "-chardev", f"socket,id=qga0,path={self.qga},"
                "server=on,wait=off",
                # The id gives QEMU's VSERPORT_CHANGE events for the port.
                "-device", "virtserialport,chardev=qga0,id=qgaport,"
                "name=org.qemu.guest_agent.0",
                "-device", "virtio-balloon-pci", "-device", "pvpanic-pci"]
        if no_shutdown:
            args.append("-no-shutdown")
        for f in (p("qmp"), p("oracle"), self.qga, self.serial, self.log):
            if os.path.exists(f):
                os.unlink(f)
        super().__init__(qmp_dir, name, [*args, *extra],
                         more=(self.qga, self.serial))

    def console_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def wait_ready(self, count=1, timeout=BOOT_TIMEOUT):
        """Waits until the guest has printed READY `count` times since it
        started (a reboot prints it again); returns the seconds since the
        QEMU started."""
        wait_for(lambda: self.console_text().count(READY) >= count
                 or not self.alive(), timeout=timeout,
                 what=f"{self.name}: {READY!r} #{count}")
        assert self.alive(), f"{self.name} exited while booting"
        return time.monotonic() - self.started

    def type(self, line):
        """Types a line on the serial console. The connection is closed at
        once: a client that does not read would stall the guest's console
        once the socket's buffer is full (all output is in NAME.log)."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(self.serial)
            s.sendall(line.encode() + b"\n")
            time.sleep(0.2)

    def agent(self, cmd, timeout=10, **args):
        """One guest-agent command on NAME.qga, after a guest-sync; returns
        its "return" (None for guest-shutdown, which does not answer)."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(self.qga)
        f = s.makefile("rwb")
        try:
            sync = int(time.time() * 1000) & 0x7fffffff
            f.write(json.dumps({"execute": "guest-sync",
                                "arguments": {"id": sync}}).encode() + b"\n")
            f.flush()
            while json.loads(f.readline()).get("return") != sync:
                pass
            msg = {"execute": cmd}
            if args:
                msg["arguments"] = args
            f.write(json.dumps(msg).encode() + b"\n")
            f.flush()
            if cmd == "guest-shutdown":
                return None
            r = json.loads(f.readline())
            if "error" in r:
                raise RuntimeError(r["error"])
            return r["return"]
        finally:
            f.close()
            s.close()

DOMAIN_XML = """<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>{vmlinux}</kernel>
    <initrd>{initrd}</initrd>
    <cmdline>{cmdline}</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <devices>
    <emulator>{qemu}</emulator>
    <serial type='pty'><target port='0'/></serial>
    <console type='pty'><target type='serial' port='0'/></console>
    <channel type='unix'>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>
    <interface type='user'><model type='virtio'/></interface>
    <memballoon model='virtio'/>
  </devices>
</domain>
"""


def domain_xml(name, vmlinux=None, initrd=None):
    """The XML of a libvirt domain of the guest: TCG (type='qemu'), direct
    kernel boot, a pty serial console and an agent channel (a unix socket
    libvirt places and connects itself)."""
    if vmlinux is None:
        vmlinux, initrd = guest_files()
    return DOMAIN_XML.format(name=escape(name), vmlinux=escape(vmlinux),
                             initrd=escape(initrd),
                             cmdline=escape(cmdline(name)),
                             qemu=escape(QEMU))


class DomainGuest:
    """The guest as a libvirt domain NAME (defined from domain_xml and
    started) of the libvirtd at `uri` (hvtest.virsh's default: the tests'
    private one); its console is read from the pty libvirt gives it."""

    def __init__(self, name, uri=None):
        self.name, self.uri = name, uri
        with tempfile.NamedTemporaryFile("w", suffix=".xml") as f:
            f.write(domain_xml(name))
            f.flush()
            virsh("define", f.name, uri=uri)
        self.started = time.monotonic()
        virsh("start", name, uri=uri)
        xml = virsh("dumpxml", name, uri=uri)
        pty = re.search(r"<serial type='pty'>\s*<source path='([^']+)'", xml)
        self.fd = os.open(pty.group(1), os.O_RDWR | os.O_NOCTTY |
                          os.O_NONBLOCK)
        self.text = ""

    def console_text(self):
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except (BlockingIOError, OSError):
                return self.text
            if not chunk:
                return self.text
            self.text += chunk.decode(errors="replace")

    def wait_ready(self, count=1, timeout=BOOT_TIMEOUT):
        wait_for(lambda: self.console_text().count(READY) >= count,
                 timeout=timeout, what=f"{self.name}: {READY!r} #{count}")
        return time.monotonic() - self.started

    def remove(self):
        os.close(self.fd)
        virsh("destroy", self.name, uri=self.uri, check=False)
        virsh("undefine", self.name, uri=self.uri, check=False)
