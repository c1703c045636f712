"""A real PostgreSQL server on 127.0.0.1 for the distributed-search tests (Debian's ``postgresql``).

Its cluster lives in a fresh temporary folder (``initdb``, trust authentication on loopback only,
fsync off: a throwaway), on a free port, with its socket in that folder, so it never meets a
system cluster. PostgreSQL refuses to run as root: as root the server runs as the ``postgres``
user Debian's package creates.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    # Debian keeps the server's programs out of PATH, per major version
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _run_as() -> list[str]:
    if os.geteuid() != 0:
        return []
    return ["runuser", "-u", "postgres", "--"]


def postgres_unavailable() -> str | None:
    """Why this machine cannot run the test server, or None."""
    if _binary("initdb") is None or _binary("postgres") is None:
        return "PostgreSQL is not installed (initdb, postgres): apt-get install postgresql"
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        return "psycopg2 is not installed: pip install -e '.[postgres]'"
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root, and there is no postgres user to run the server as (Debian's postgresql creates it)"
    return None


@dataclass
class PostgresServer:
    folder: Path
    port: int
    process: subprocess.Popen

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://edgecls@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        self.process.terminate()  # smart shutdown
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        shutil.rmtree(self.folder, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_postgres() -> PostgresServer:
    # Not under pytest's tmp_path: its folders are private to root, and the server may run as postgres.
    folder = Path(tempfile.mkdtemp(prefix="edgecls-pg-"))
    os.chmod(folder, 0o755)
    data = folder / "data"
    data.mkdir(mode=0o700)
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
        shutil.chown(data, "postgres")
    subprocess.run([*_run_as(), _binary("initdb"), "-D", str(data), "-U", "edgecls", "--auth=trust", "-E", "UTF8",
                    "--no-sync"], check=True, capture_output=True)
    port = _free_port()
    process = subprocess.Popen([*_run_as(), _binary("postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port),
                                "-k", str(folder), "-c", "fsync=off", "-c", "max_connections=50"],
                               stdout=subprocess.DEVNULL, stderr=open(folder / "server.log", "wb"))  # noqa: SIM115
    server = PostgresServer(folder, port, process)
    deadline = time.monotonic() + 30
    import psycopg2

    while True:
        try:
            psycopg2.connect(host="127.0.0.1", port=port, user="edgecls", dbname="postgres").close()
            return server
        except psycopg2.OperationalError:
            if process.poll() is not None or time.monotonic() > deadline:
                error = (folder / "server.log").read_text(errors="replace") or "did not accept connections"
                server.stop()
                raise RuntimeError(f"the test PostgreSQL server did not start: {error[-500:]}") from None
            time.sleep(0.2)
