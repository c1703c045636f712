"""One OpenSSH connection per command, shared by every step that runs on the device.

The system ``ssh`` does everything that touches secrets (keys, agents, passwords it is never
asked for, host keys, jump hosts): edgecls only passes options. ``BatchMode=yes`` so ssh never
waits for a prompt, a connection timeout, and the host keys checked as the user's ssh checks them
(never ``StrictHostKeyChecking=no``). A control master in a private temporary folder carries every
later command, so a search pays the handshake once; ``ControlPersist`` is short, so even a killed
edgecls leaves no connection behind for long.

Every remote command is a list of arguments, each quoted with :func:`shlex.quote` for the remote
shell, and runs under the device's own ``timeout``: a command that outlives its time is killed
there, not only its ssh client here.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgecls.devices.address import DeviceAddress, parse_device
from edgecls.errors import DeviceError, DeviceLostError

CONNECT_TIMEOUT_S = 10
PERSIST_S = 60  # the master outlives its last command by this much, then exits on its own
KILL_AFTER_S = 5  # after the remote timeout's TERM, KILL
TIMED_OUT = 124  # coreutils/BusyBox timeout's exit code when the time ran out
SSH_FAILED = 255


@dataclass
class Completed:
    """A remote command's exit code and output (bytes)."""

    returncode: int
    stdout: bytes
    stderr: bytes

    def error_line(self) -> str:
        lines = [line for line in self.stderr.decode("utf-8", "replace").splitlines() if line.strip()]
        return lines[-1].strip()[:300] if lines else f"exit code {self.returncode}"


class SshConnection:
    """The shared connection to one device: ``open()``, then ``run()`` any number of times, then ``close()``."""

    def __init__(self, device, *, ssh_config=None, connect_timeout: float = CONNECT_TIMEOUT_S):
        self.address: DeviceAddress = device if isinstance(device, DeviceAddress) else parse_device(device)
        self.ssh_config = Path(ssh_config) if ssh_config else None
        if self.ssh_config is not None and not self.ssh_config.is_file():
            raise DeviceError(f"ssh config file not found: {self.ssh_config}")
        self.connect_timeout = connect_timeout
        self._folder: Path | None = None
        self.commands = 0  # remote commands run through this connection (the handshake not counted)

    # ------------------------------------------------------------------ lifetime

    def __enter__(self) -> SshConnection:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def open(self) -> None:
        """Connect once (the control master); a one-line :class:`DeviceError` when ssh cannot."""
        if shutil.which("ssh") is None:
            raise DeviceError("no ssh client here: install OpenSSH (e.g. apt-get install openssh-client)")
        # A short path under /tmp: a control socket's path is limited to about 100 bytes.
        self._folder = Path(tempfile.mkdtemp(prefix="edgecls-ssh-", dir="/tmp" if os.path.isdir("/tmp") else None))
        log = self._folder / "master.log"
        argv = [*self._base(), "-o", "ControlMaster=yes", "-o", f"ControlPersist={PERSIST_S}", "-f", "-N",
                "--", self.address.host]
        # stdout/stderr to a file, never a pipe: the master lives on in the background holding them.
        with open(log, "wb") as out:
            try:
                code = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                      timeout=self.connect_timeout + 30).returncode
            except subprocess.TimeoutExpired:
                code = None
        if code != 0:
            text = log.read_bytes()
            self.close()
            if code is None:
                raise DeviceError(f"cannot reach {self.address}: no answer within {self.connect_timeout + 30:g} s")
            raise ssh_failure(self.address, Completed(code, b"", text), connecting=True)

    def close(self) -> None:
        """End the control master and remove its folder (safe to call twice)."""
        folder, self._folder = self._folder, None
        if folder is None:
            return
        if (folder / "control").exists():
            subprocess.run([*self._base(folder), "-O", "exit", "--", self.address.host], stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=30)
        shutil.rmtree(folder, ignore_errors=True)

    # ------------------------------------------------------------------ commands

    def run(self, argv, *, timeout: float, stdin: bytes | None = None, what: str = "a command") -> Completed:
        """Run ``argv`` on the device under its ``timeout``; returns what it printed, whatever its exit code.

        ssh's own failures (unreachable, refused, connection lost) and a timeout are a
        :class:`DeviceError` naming ``what`` ran; the caller judges the command's exit code.
        """
        if self._folder is None:
            raise RuntimeError("SshConnection.run before open()")
        seconds = max(1, int(round(timeout)))
        remote = shell_command(["timeout", "-k", str(KILL_AFTER_S), str(seconds), *argv])
        ssh = [*self._base(), "-o", "ControlMaster=no", "--", self.address.host, remote]
        self.commands += 1
        try:
            done = subprocess.run(ssh, input=stdin if stdin is not None else b"", capture_output=True,
                                  timeout=seconds + KILL_AFTER_S + self.connect_timeout + 15)
        except subprocess.TimeoutExpired:
            raise DeviceLostError(f"{self.address} stopped answering while running {what}") from None
        result = Completed(done.returncode, done.stdout, done.stderr)
        if result.returncode == SSH_FAILED:
            raise ssh_failure(self.address, result, connecting=False, what=what)
        if result.returncode in (TIMED_OUT, 128 + 9):
            raise DeviceError(f"{what} on {self.address} took longer than {seconds} s and was stopped there")
        return result

    def _base(self, folder: Path | None = None) -> list[str]:
        folder = folder or self._folder
        argv = ["ssh"]
        if self.ssh_config is not None:
            argv += ["-F", str(self.ssh_config)]
        argv += ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={int(self.connect_timeout)}",
                 "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3",
                 "-o", f"ControlPath={folder / 'control'}", *self.address.ssh_options()]
        return argv


def shell_command(argv) -> str:
    """``argv`` as one line for the remote shell, every argument quoted (spaces, quotes, ``$``, ``;``)."""
    return " ".join(shlex.quote(str(arg)) for arg in argv)


def ssh_failure(address: DeviceAddress, result: Completed, *, connecting: bool, what: str = "") -> DeviceError:
    """The one line for an ssh failure (exit code 255), from what ssh printed."""
    text = result.stderr.decode("utf-8", "replace")
    lower = text.lower()
    host = address.host
    if "identification has changed" in lower:
        return DeviceError(f"the host key of {host} has changed since you last connected; ssh refuses it "
                           f"(run `ssh {address.text}` to see why; edgecls never overrides host keys)")
    if "host key verification failed" in lower or "no matching host key" in lower:
        return DeviceError(f"the host key of {host} is not known yet: run `ssh {address.text}` once to check "
                           "and accept it, then try again")
    if "permission denied" in lower:
        return DeviceError(f"{address.text} refused the login ({_ssh_line(text, 'permission denied')}): edgecls "
                           f"logs in with your ssh keys alone (BatchMode); `ssh {address.text}` must work "
                           "without a password prompt")
    if not connecting:  # it answered when the command began: whatever ssh says now, the connection went
        return DeviceLostError(f"the connection to {address.text} was lost while running {what or 'a command'}: "
                               f"{_ssh_line(text)}")
    return DeviceError(f"cannot reach {address.text}: {_ssh_line(text)}")


def _ssh_line(text: str, prefer: str = "") -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("debug")]
    if prefer:
        chosen = [line for line in lines if prefer in line.lower()]
        if chosen:
            return chosen[0][:200]
    return (lines[-1] if lines else "ssh exited without saying why")[:200]
