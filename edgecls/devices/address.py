"""``--device DEVICE``: ``ssh://[user@]host[:port]``, or a host (alias) as the user's ssh knows it.

An alias is passed to ssh untouched, so ``~/.ssh/config`` decides its user, port, keys and jump
hosts. What cannot be a host name is refused here: a value starting with ``-`` would reach ssh as
an option.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from edgecls.errors import DeviceError

_HOST = re.compile(r"^[A-Za-z0-9_.%:\[\]][A-Za-z0-9_.%:\[\]-]*$")
_USER = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.@-]*$")
FORMS = "ssh://[user@]host[:port] or a host alias from ~/.ssh/config"


@dataclass(frozen=True)
class DeviceAddress:
    """Where the device is: ``text`` as the user wrote it, the host ssh is given, and an optional user and port."""

    text: str
    host: str
    user: str | None = None
    port: int | None = None

    def ssh_options(self) -> list[str]:
        """``-l USER`` / ``-p PORT`` for what the URL named; an alias leaves both to ssh_config."""
        options = []
        if self.user:
            options += ["-l", self.user]
        if self.port:
            options += ["-p", str(self.port)]
        return options

    def __str__(self) -> str:
        return self.text


def parse_device(text) -> DeviceAddress:
    """The :class:`DeviceAddress` of ``--device``; a one-line :class:`DeviceError` for anything else."""
    text = str(text or "").strip()
    if not text:
        raise DeviceError(f"give a device: {FORMS}")
    if "://" in text:
        return _from_url(text)
    user, _, host = text.rpartition("@")
    _check(text, host, user or None)
    return DeviceAddress(text, host, user or None)


def _from_url(text: str) -> DeviceAddress:
    parts = urlsplit(text)
    if parts.scheme != "ssh":
        raise DeviceError(f"device {text!r}: only ssh:// devices are supported ({FORMS})")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.password is not None:
        raise DeviceError(f"device {text!r}: expected {FORMS} (no path, password or query)")
    try:
        port = parts.port
    except ValueError:
        raise DeviceError(f"device {text!r}: the port is not a number from 1 to 65535") from None
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal, written [::1] in the URL
        host = host.strip("[]")
    _check(text, host, parts.username)
    return DeviceAddress(text, host, parts.username, port or None)


def _check(text: str, host: str, user: str | None) -> None:
    if not host or host.startswith("-") or not _HOST.match(host):
        raise DeviceError(f"device {text!r}: {host or 'no host'!r} is not a host name ({FORMS})")
    if user is not None and (user.startswith("-") or not _USER.match(user)):
        raise DeviceError(f"device {text!r}: {user!r} is not a user name")
