"""A real OpenSSH server on 127.0.0.1 as a "device", for the device tests.

Everything lives in one temporary folder: a throwaway host key, an authorized client key (and a
stranger's key that is not authorized), sshd's config, and the client's config and known_hosts,
given to ssh with ``-F`` so the user's own ``~/.ssh`` is never read or touched. The device's
Python is a wrapper around this interpreter in which ``tensorflow`` (and ``edgecls``) cannot be
imported, with ``HOME`` in the folder, so the device cache lands there.

Hosts in the client config: ``device`` (known, authorized), ``stranger`` (a key the server
refuses), ``unknown-host`` (a host key ssh has never seen); ``ssh://USER@127.0.0.1:PORT`` works too.
"""

from __future__ import annotations

import getpass
import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")
BLOCKED = ("tensorflow", "tf_keras", "keras", "edgecls")


@dataclass
class SshDevice:
    folder: Path
    port: int
    user: str
    config: Path  # the client's ssh config (ssh -F)
    python: Path  # the device's Python
    home: Path  # HOME of the device's Python
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def sshd_unavailable() -> str | None:
    """Why this machine cannot run the test server, or None."""
    if not SSHD.is_file() or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        return "OpenSSH (sshd, ssh, ssh-keygen) is not installed: apt-get install openssh-server"
    if os.geteuid() != 0:
        return "the test sshd runs as root (it must switch to the logged-in user); run the tests as root"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgecls-test", "-f", str(path)],
                   check=True, capture_output=True)
    return (path.with_suffix(".pub")).read_text().strip()


def device_python(folder: Path, home: Path, name: str = "python3") -> Path:
    """A Python for the device where the TensorFlow stack and edgecls cannot be imported."""
    blocked = folder / "blocked"
    for module in BLOCKED:
        (blocked / module).mkdir(parents=True, exist_ok=True)
        (blocked / module / "__init__.py").write_text(f"raise ImportError('blocked on the device: {module}')\n")
    folder.mkdir(parents=True, exist_ok=True)
    wrapper = folder / name
    wrapper.write_text(f"#!/bin/sh\nHOME={shlex.quote(str(home))} PYTHONPATH={shlex.quote(str(blocked))} "
                       f"exec {shlex.quote(sys.executable)} \"$@\"\n")
    wrapper.chmod(0o755)
    return wrapper


def start_sshd(folder: Path) -> SshDevice:
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    port, user = _free_port(), getpass.getuser()
    host_pub = _keygen(folder / "host_key")
    (folder / "authorized_keys").write_text(_keygen(folder / "client_key") + "\n")
    _keygen(folder / "stranger_key")
    (folder / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {folder / 'host_key'}\n"
        f"AuthorizedKeysFile {folder / 'authorized_keys'}\nPidFile {folder / 'sshd.pid'}\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
        "UsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n"
        f"AllowUsers {user}\nLogLevel ERROR\nMaxStartups 50\nMaxSessions 50\n")
    (folder / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub}\n")
    (folder / "empty_known_hosts").write_text("")
    common = (f"  HostName 127.0.0.1\n  Port {port}\n  User {user}\n  IdentitiesOnly yes\n  IdentityAgent none\n"
              f"  GlobalKnownHostsFile /dev/null\n")
    (folder / "ssh_config").write_text(
        f"Host device\n{common}  IdentityFile {folder / 'client_key'}\n  UserKnownHostsFile {folder / 'known_hosts'}\n"
        f"Host stranger\n{common}  IdentityFile {folder / 'stranger_key'}\n"
        f"  UserKnownHostsFile {folder / 'known_hosts'}\n"
        f"Host unknown-host\n{common}  IdentityFile {folder / 'client_key'}\n"
        f"  UserKnownHostsFile {folder / 'empty_known_hosts'}\n"
        f"Host 127.0.0.1\n  IdentitiesOnly yes\n  IdentityAgent none\n  IdentityFile {folder / 'client_key'}\n"
        f"  UserKnownHostsFile {folder / 'known_hosts'}\n  GlobalKnownHostsFile /dev/null\n")
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege-separation folder
    process = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(folder / "sshd_config")], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=open(folder / "sshd.log", "wb"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sshd exited: {(folder / 'sshd.log').read_text()[-500:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.05)
    home = folder / "device-home"
    home.mkdir()
    return SshDevice(folder, port, user, folder / "ssh_config", device_python(folder / "bin", home), home, process)
