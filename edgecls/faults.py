"""Named points where the fault tests stop a real edgecls process, deterministically, not after a lucky sleep.

``EDGECLS_KILL_AT=<point>`` kills the process with SIGKILL when it reaches that point (what a
power cut or the OOM killer does); ``EDGECLS_STOP_AT=<point>`` stops it with SIGSTOP there (a
process paused mid-work), so a test can start a second command and then ``SIGCONT`` the first.
The points are publish stages (edgecls.publish.STAGES) and ``lock-held`` (edgecls.run_lock).
Unset, each point costs one environment lookup.
"""

from __future__ import annotations

import os
import signal

KILL_ENV = "EDGECLS_KILL_AT"
STOP_ENV = "EDGECLS_STOP_AT"


def reached(point: str) -> None:
    """Mark ``point``; the process dies or stops here when the environment names it."""
    if os.environ.get(KILL_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get(STOP_ENV) == point:
        os.kill(os.getpid(), signal.SIGSTOP)
