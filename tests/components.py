"""What a test needs from the machine (a browser, a mount, a server): skip locally, fail in CI.

Locally a missing component is a skip that says how to get it. Under ``CI=true`` (.ci/run installs
every component the tests use) a missing one is a failure, so CI never passes by skipping.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import pytest


def missing(reason: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


@contextlib.contextmanager
def tmpfs(folder: Path, *, size_kb: int, read_only: bool = False):
    """A tmpfs of ``size_kb`` mounted on ``folder`` for the block (a full or read-only disk on demand)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    options = f"size={size_kb}k" + (",ro" if read_only else "")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        missing(f"cannot mount a tmpfs here ({mounted.stderr.strip() or 'mount failed'}); the full-disk and "
                "read-only tests need root (or CAP_SYS_ADMIN)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)
