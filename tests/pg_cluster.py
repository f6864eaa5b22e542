"""A throwaway PostgreSQL server for tests: initdb + pg_ctl in a temporary folder, a free loopback port.

The server refuses to run as root, so as root it runs as the ``postgres`` system user (``runuser``). Tests
that need it skip, saying why, when the server binaries, that user or the driver are missing.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

BIN_DIRS = [Path(os.environ["ESCALE_PG_BIN"])] if os.environ.get("ESCALE_PG_BIN") else sorted(
    Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def why_not() -> str | None:
    """Why no test server can start here, or None."""
    if not any((d / "initdb").is_file() for d in BIN_DIRS):
        return "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin; set ESCALE_PG_BIN)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run the server as"
        if shutil.which("runuser") is None:
            return "running as root and runuser is missing"
    try:
        import psycopg  # noqa: F401 - the driver SQLAlchemy uses for postgresql:// URLs
    except ImportError:
        return "the PostgreSQL driver is not installed (pip install 'escale[postgres]')"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server with an empty database ``escale``; yields its URL; stops it and removes its files."""
    bin_dir = next(d for d in BIN_DIRS if (d / "initdb").is_file())
    root = Path(tempfile.mkdtemp(prefix="escale-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    data, port = root / "data", _free_port()

    def run(*args: str) -> None:
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=120)

    try:
        run(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "escale", "--no-sync")
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(root / "server.log"), "-w", "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50", "start")
        try:
            run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "escale", "escale")
            yield f"postgresql://escale@127.0.0.1:{port}/escale"
        finally:
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)
