"""A private, throwaway PostgreSQL server built from the system's ``initdb``/``pg_ctl``.

Used by ``chronoraft up`` and by the test suite when ``CHRONORAFT_DATABASE_URL`` is unset.
PostgreSQL refuses to run as root, and sessions and CI here run as root, so when we are
root the server runs as the ``postgres`` system user (``runuser``) in directories it owns.
The server listens on 127.0.0.1 only, trusts local connections and is stopped on exit.
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


class PgServerError(RuntimeError):
    """The private PostgreSQL could not be created or started."""


def _find_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    if candidates:
        return candidates[0]
    raise PgServerError(
        f"{name} not found: install PostgreSQL server binaries (Debian: apt-get install "
        "postgresql) or set CHRONORAFT_DATABASE_URL to an existing server"
    )


def _others_can_traverse(path: Path) -> bool:
    """True when every directory from / down to ``path`` is searchable by other users."""
    current = path
    while True:
        try:
            if not current.stat().st_mode & 0o001:
                return False
        except FileNotFoundError:
            pass
        if current.parent == current:
            return True
        current = current.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PgServer:
    """One private PostgreSQL cluster; ``start()`` then ``url``; ``stop()`` when done."""

    base_dir: Path
    port: int
    user: str = "chronoraft"
    dbname: str = "chronoraft"

    @classmethod
    def create(cls, base_dir: str | None = None, port: int | None = None) -> PgServer:
        """A server rooted at ``base_dir`` (a new temp dir when None).

        As root the server runs as ``postgres``, which must be able to reach the directory;
        when a parent is closed to it (e.g. under /root or pytest's 0700 temp root) the
        data moves to a stable place under /var/tmp named after the requested path.
        """
        root = (
            Path(base_dir).resolve()
            if base_dir
            else Path(tempfile.mkdtemp(prefix="chronoraft-pg-"))
        )
        if os.geteuid() == 0 and not _others_can_traverse(root.parent):
            digest = hashlib.sha256(str(root).encode()).hexdigest()[:10]
            root = Path("/var/tmp") / f"chronoraft-pg-{digest}"
        root.mkdir(parents=True, exist_ok=True)
        return cls(base_dir=root, port=port or free_port())

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base_dir / "sock"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.dbname}"

    def _as_owner(self, argv: list[str]) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *argv]
        return argv

    def _run(self, argv: list[str], timeout: float = 120) -> None:
        proc = subprocess.run(
            self._as_owner(argv), capture_output=True, text=True, timeout=timeout, cwd="/"
        )
        if proc.returncode != 0:
            raise PgServerError(f"{' '.join(argv[:2])} failed: {proc.stderr.strip()[-2000:]}")

    def _prepare_dirs(self) -> None:
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.base_dir, "postgres", "postgres")
            shutil.chown(self.socket_dir, "postgres", "postgres")
            os.chmod(self.base_dir, 0o755)

    def init(self) -> None:
        """Create the cluster (once) with a superuser named ``chronoraft``, trust auth."""
        if (self.data_dir / "PG_VERSION").exists():
            return
        self._prepare_dirs()
        self._run(
            [
                _find_bin("initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                self.user,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ]
        )

    def start(self, timeout: float = 60) -> None:
        """Start the server (idempotent) and create the database if missing."""
        self.init()
        self._prepare_dirs()
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.socket_dir} "
            "-c max_connections=300 -c fsync=on -c shared_buffers=128MB "
            "-c log_min_messages=warning"
        )
        self._run(
            [
                _find_bin("pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-o",
                options,
                "-w",
                "-t",
                str(int(timeout)),
                "start",
            ],
            timeout=timeout + 10,
        )
        self._create_database(timeout)

    def _create_database(self, timeout: float) -> None:
        import psycopg  # local import: pgserver is also used by code paths without psycopg
        from psycopg import sql

        deadline = time.monotonic() + timeout
        admin = f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"
        while True:
            try:
                with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
                    exists = conn.execute(
                        "SELECT 1 FROM pg_database WHERE datname = %s", (self.dbname,)
                    ).fetchone()
                    if not exists:
                        conn.execute(
                            sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.dbname))
                        )
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; ``immediate`` simulates a crash (used by outage tests)."""
        if not (self.data_dir / "postmaster.pid").exists():
            return
        self._run([_find_bin("pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop"])

    def is_running(self) -> bool:
        return (self.data_dir / "postmaster.pid").exists()

    def destroy(self) -> None:
        """Stop and delete everything on disk."""
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)
