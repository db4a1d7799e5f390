# SPDX-License-Identifier: GPL-2.0-or-later
"""A private sshd on 127.0.0.1 with keys made by ssh-keygen, for the tests
(test_user_ssh.py) and the fleet bench (bench/fleet). The host's own sshd
and ~/.ssh are never used.

ssh reads ~ from the password database, not $HOME, so the client's config
reaches it the one way a user without root's ~/.ssh could: an `ssh` first
on PATH (Sshd.bin) that adds `-F CONFIG`. The config names three hosts:
good (the right keys), badkey (a key sshd refuses), badhost (a known_hosts
with another host key); all three are 127.0.0.1 on the private port.
"""

import os
import socket
import subprocess
import time

from hvtest import free_port


def keygen(path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                    path], check=True)
    with open(path + ".pub") as f:
        return f.read()


class Sshd:
    """sshd -D on a free 127.0.0.1 port, files in d; close() stops it."""

    def __init__(self, d):
        self.dir = d
        self.port = free_port()
        hostkey = os.path.join(d, "host_key")
        keygen(hostkey)
        other = keygen(os.path.join(d, "other_host_key"))
        authorized = keygen(os.path.join(d, "id_good"))
        keygen(os.path.join(d, "id_refused"))
        with open(os.path.join(d, "authorized_keys"), "w") as f:
            f.write(authorized)
        with open(hostkey + ".pub") as f:
            hostpub = f.read().split()
        for name, key in (("known_hosts", hostpub),
                          ("wrong_known_hosts", other.split())):
            with open(os.path.join(d, name), "w") as f:
                f.write(f"[127.0.0.1]:{self.port} {key[0]} {key[1]}\n")
        conf = os.path.join(d, "sshd_config")
        # MaxStartups: a fleet logs in many times at once. SHLVL=1: the
        # remote bash is not the first shell, so it skips root's ~/.bashrc
        # (on the test machine, pyenv's: seconds of CPU per login).
        with open(conf, "w") as f:
            f.write(f"ListenAddress 127.0.0.1\nHostKey {hostkey}\n"
                    f"AuthorizedKeysFile {d}/authorized_keys\n"
                    "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
                    "UsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n"
                    "MaxStartups 100\nSetEnv SHLVL=1\n"
                    f"PidFile {d}/sshd.pid\n")
        os.makedirs("/run/sshd", exist_ok=True)
        self.log = open(os.path.join(d, "sshd.log"), "w")
        self.proc = subprocess.Popen(
            ["/usr/sbin/sshd", "-D", "-e", "-f", conf, "-p", str(self.port)],
            stdout=self.log, stderr=self.log)
        end = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port)).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > end:
                    self.close()
                    raise RuntimeError(f"sshd did not listen: see {d}/sshd.log")
                time.sleep(0.02)
        client = os.path.join(d, "ssh_config")
        with open(client, "w") as f:
            for host, key, kh in (("good", "id_good", "known_hosts"),
                                  ("badkey", "id_refused", "known_hosts"),
                                  ("badhost", "id_good", "wrong_known_hosts")):
                f.write(f"Host {host}\n  HostName 127.0.0.1\n"
                        f"  IdentityFile {d}/{key}\n  IdentitiesOnly yes\n"
                        f"  UserKnownHostsFile {d}/{kh}\n"
                        f"  HostKeyAlias [127.0.0.1]:{self.port}\n"
                        "  GlobalKnownHostsFile /dev/null\n")
        self.bin = os.path.join(d, "bin")
        os.mkdir(self.bin)
        wrapper = os.path.join(self.bin, "ssh")
        with open(wrapper, "w") as f:
            f.write(f'#!/bin/sh\nexec /usr/bin/ssh -F {client} "$@"\n')
        os.chmod(wrapper, 0o755)

    def uri(self, host, socket_path, driver="qemu", path="/system", extra=""):
        """driver+ssh://root@HOST:PORT/PATH reaching the daemon listening
        on socket_path (the remote end is this machine: nc -U there)."""
        return (f"{driver}+ssh://root@{host}:{self.port}{path}"
                f"?socket={socket_path}{extra}")

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
