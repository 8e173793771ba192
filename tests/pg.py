"""A throwaway PostgreSQL + PostGIS cluster for tests: initdb + pg_ctl in a temporary folder, 127.0.0.1 only.

``PostgresServer.start()`` finds the server binaries (``pg_config --bindir``, then ``/usr/lib/postgresql/*/bin``),
creates a cluster on a free port, and a template database with PostGIS from which each test database is copied
(fast: a file copy, no extension build per test). ``stop()`` stops the server and deletes the folder.

initdb refuses to run as root; as root the folder is given to the ``postgres`` user and the binaries run through
``runuser -u postgres --`` (the Debian package creates that user).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

TEMPLATE = "routewatch_template"


class PostgresUnavailable(RuntimeError):
    """PostgreSQL (or PostGIS) is not installed here: the message says what is missing and how to get it."""


def find_bindir() -> Path:
    """The folder of initdb/pg_ctl, or PostgresUnavailable."""
    candidates: list[str] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(out.stdout.strip())
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for c in candidates:
        if c and (Path(c) / "initdb").is_file() and (Path(c) / "pg_ctl").is_file():
            return Path(c)
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl) not found; install Debian postgresql-15 and "
        "postgresql-15-postgis-3 (`make system-deps`)"
    )


def _has_postgis(bindir: Path) -> bool:
    share = subprocess.run([str(bindir / "pg_config"), "--sharedir"], capture_output=True, text=True, check=False)
    roots = [share.stdout.strip()] if share.returncode == 0 else []
    roots += glob.glob("/usr/share/postgresql/*")
    return any((Path(r) / "extension" / "postgis.control").is_file() for r in roots if r)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    bindir: Path
    root: Path
    port: int
    user: str = "postgres"
    _as_postgres: list[str] = field(default_factory=list)

    @classmethod
    def start(cls) -> PostgresServer:
        bindir = find_bindir()
        if not _has_postgis(bindir):
            raise PostgresUnavailable("PostGIS is not installed; install Debian postgresql-15-postgis-3")
        root = Path(tempfile.mkdtemp(prefix="routewatch-pg-"))
        prefix: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(root, "postgres", "postgres")
            prefix = ["runuser", "-u", "postgres", "--"]
        server = cls(bindir=bindir, root=root, port=_free_port(), _as_postgres=prefix)
        try:
            server._init_and_start()
            server._create_template()
        except BaseException:
            server.stop()
            raise
        return server

    def _run(self, *args: str) -> None:
        proc = subprocess.run([*self._as_postgres, *args], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed ({proc.returncode}): {proc.stderr or proc.stdout}")

    def _init_and_start(self) -> None:
        data = self.root / "data"
        self._run(str(self.bindir / "initdb"), "-D", str(data), "-U", self.user, "--auth=trust",
                  "--encoding=UTF8", "--locale=C")
        options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories='{self.root}' "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run(str(self.bindir / "pg_ctl"), "-D", str(data), "-l", str(self.root / "server.log"),
                  "-o", options, "-w", "-t", "60", "start")

    def _create_template(self) -> None:
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {TEMPLATE}")
        with psycopg.connect(self.dsn(TEMPLATE), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION postgis")

    def dsn(self, database: str) -> str:
        return f"host=127.0.0.1 port={self.port} user={self.user} dbname={database}"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database with PostGIS; returns its name."""
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
        return name

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        data = self.root / "data"
        if (data / "postmaster.pid").exists():
            subprocess.run([*self._as_postgres, str(self.bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                            "-w", "stop"], capture_output=True, check=False)
        shutil.rmtree(self.root, ignore_errors=True)
