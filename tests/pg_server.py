"""A throwaway PostgreSQL cluster for the store tests: Debian's ``postgresql``, started on loopback.

``TempPostgres`` runs ``initdb`` into a fresh temp folder, starts the server with ``pg_ctl`` on
127.0.0.1 and a free port (its unix socket in the same folder, never ``/var/run/postgresql``),
with fsync and synchronous commit off (the data is thrown away), and on ``stop()`` kills it and
deletes the folder. PostgreSQL refuses to run as root, so as root every server command runs as
the ``postgres`` system user (``runuser``), which owns the temp folder; as anyone else it runs as
that user. Clients log in over TCP with a password (scram-sha-256), so the tests exercise the
same credential path a team store uses; the admin connection uses the unix socket (trust).

Run ``python -m tests.pg_server`` to get a server for manual tests (Ctrl+C stops it).
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

START_TIMEOUT_S = 60
COMMAND_TIMEOUT_S = 120
PORT_ATTEMPTS = 5
SYSTEM_USER = "postgres"
ROLE = "cw_test"
DATABASE = "comfy_widgets"
SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "60",
    "shared_buffers": "16MB",
    "dynamic_shared_memory_type": "mmap",
    "log_min_messages": "warning",
    "log_statement": "'none'",
}


class PostgresUnavailable(RuntimeError):
    """PostgreSQL's server programs are missing or the cluster would not start."""


def find_bindir() -> Path:
    """The folder with ``initdb`` and ``pg_ctl``: ``$COMFY_WIDGETS_PG_BINDIR``, else the newest
    ``/usr/lib/postgresql/*/bin`` (Debian), else the ``PATH``."""
    given = os.environ.get("COMFY_WIDGETS_PG_BINDIR")
    candidates = [Path(given)] if given else []
    versions = Path("/usr/lib/postgresql").glob("*/bin")
    candidates += sorted(versions, key=_version_key, reverse=True)
    found = shutil.which("initdb")
    if found:
        candidates.append(Path(found).parent)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    raise PostgresUnavailable(
        "PostgreSQL's initdb/pg_ctl were not found (install Debian's `postgresql`: "
        "apt-get install -y postgresql; tests/run.sh does it) or set COMFY_WIDGETS_PG_BINDIR"
    )


def _version_key(path: Path) -> tuple[int, ...]:
    """Sort key for ``/usr/lib/postgresql/<version>/bin``."""
    return tuple(int(n) for n in re.findall(r"\d+", path.parent.name)) or (0,)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TempPostgres:
    """A PostgreSQL server in a temp folder, for as long as the tests need it."""

    def __init__(self, bindir: Path | None = None):
        self.bindir = bindir or find_bindir()
        self.as_root = os.geteuid() == 0
        self.password = secrets.token_urlsafe(18)
        self.port: int | None = None
        self.root: Path | None = None
        self._databases = 0
        self._schemas = 0

    @property
    def data(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        assert self.root is not None
        return self.root / "server.log"

    def start(self) -> TempPostgres:
        """initdb, start on a free port (a few tries if another process takes it first), and
        create the login role the tests connect as."""
        self.root = Path(tempfile.mkdtemp(prefix="cw-pg-", dir=_tempdir_for_others()))
        try:
            if self.as_root:
                self.root.chmod(0o700)
                os.chown(self.root, *_uid_gid(SYSTEM_USER))
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "-E", "UTF8",
                      "--locale=C", "--auth-local=trust", "--auth-host=scram-sha-256",
                      "--no-sync", "--no-instructions")  # fmt: skip
            self._start_on_a_free_port()
            with self.admin() as conn:
                conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                        sql.Identifier(ROLE), sql.Literal(self.password)
                    )
                )
            self.create_database(DATABASE)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_on_a_free_port(self) -> None:
        """Write the port into postgresql.conf and start; retry when the port was taken."""
        for _ in range(PORT_ATTEMPTS):
            self.port = free_port()
            settings = {**SETTINGS, "port": str(self.port)}
            settings["unix_socket_directories"] = f"'{self.root}'"
            conf = "".join(f"{key} = {value}\n" for key, value in settings.items())
            (self.data / "postgresql.auto.conf").write_text(conf)
            result = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log_path),
                               "-w", "-t", str(START_TIMEOUT_S), "start", check=False)  # fmt: skip
            if result.returncode == 0:
                return
            log = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
            if "could not bind" not in log and "already in use" not in log:
                raise PostgresUnavailable(f"pg_ctl start failed: {result.stdout}\n{log[-2000:]}")
        raise PostgresUnavailable(f"no free port after {PORT_ATTEMPTS} tries")

    def stop(self) -> None:
        """Stop the server (immediate: the data is thrown away) and delete its folder."""
        if self.root is None:
            return
        if (self.data / "postmaster.pid").exists():
            result = self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w",
                               "-t", "30", "stop", check=False)  # fmt: skip
            if result.returncode != 0:
                _kill_postmaster(self.data / "postmaster.pid")
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def pause(self) -> None:
        """Stop the server, keeping its data and port (clients see a database that is down)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t",
                  str(START_TIMEOUT_S), "stop")  # fmt: skip

    def unpause(self) -> None:
        """Start the server again after ``pause``, on the same port."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "-w", "-t",
                  str(START_TIMEOUT_S), "start")  # fmt: skip

    def restart(self) -> None:
        """Restart the server on the same port (clients' connections are cut)."""
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log_path), "-m", "fast",
                  "-w", "-t", str(START_TIMEOUT_S), "restart")  # fmt: skip

    def __enter__(self) -> TempPostgres:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def admin(self, dbname: str = "postgres") -> psycopg.Connection:
        """A superuser connection over the unix socket (autocommit)."""
        return psycopg.connect(
            host=str(self.root),
            port=self.port,
            user="postgres",
            dbname=dbname,
            autocommit=True,
            connect_timeout=10,
        )

    def create_database(self, name: str | None = None) -> str:
        """A new empty database owned by the test role; returns its name."""
        self._databases += 1
        name = name or f"cw_{os.getpid()}_{self._databases}"
        with self.admin() as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {} TEMPLATE template0").format(
                    sql.Identifier(name), sql.Identifier(ROLE)
                )
            )
        return name

    def drop_database(self, name: str) -> None:
        """Drop a database, ending the connections a test left open on it."""
        with self.admin() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def create_schema(self) -> str:
        """A new empty schema in the test database, owned by the test role (a fresh store for
        one test in a few ms, where CREATE DATABASE takes 0.3-1.5 s); returns its name."""
        self._schemas += 1
        name = f"t{os.getpid()}_{self._schemas}"
        with self.admin(DATABASE) as conn:
            conn.execute(
                sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(
                    sql.Identifier(name), sql.Identifier(ROLE)
                )
            )
        return name

    def drop_schema(self, name: str) -> None:
        """Drop a test's schema and everything in it."""
        with self.admin(DATABASE) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))

    def url(self, dbname: str = DATABASE, schema: str | None = None) -> str:
        """``postgresql://role:password@127.0.0.1:port/dbname`` (the password is URL-safe),
        with ``search_path`` set to ``schema`` when one is given."""
        url = f"postgresql://{ROLE}:{self.password}@127.0.0.1:{self.port}/{dbname}"
        return f"{url}?options=-csearch_path%3D{schema}" if schema else url

    def _run(self, program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run one of PostgreSQL's programs, as ``postgres`` when we are root; with a deadline."""
        command = [str(self.bindir / program), *args]
        if self.as_root:
            command = ["runuser", "-u", SYSTEM_USER, "--", *command]
        result = subprocess.run(
            command,
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
        )
        if check and result.returncode != 0:
            raise PostgresUnavailable(f"{program} failed ({result.returncode}): {result.stdout}")
        return result


def _uid_gid(user: str) -> tuple[int, int]:
    """uid and gid of a system user, with a clear error when it does not exist."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise PostgresUnavailable(
            f"running as root needs the {user!r} system user (Debian's postgresql package "
            "creates it) to run the server"
        ) from None
    return entry.pw_uid, entry.pw_gid


def _tempdir_for_others() -> str:
    """A temp folder other users can reach (``$TMPDIR`` may be private to root)."""
    base = tempfile.gettempdir()
    return base if os.stat(base).st_mode & 0o001 else "/tmp"


def _kill_postmaster(pidfile: Path) -> None:
    """Kill the server we started when pg_ctl could not stop it (its pid is in postmaster.pid)."""
    try:
        pid = int(pidfile.read_text().splitlines()[0])
        os.kill(pid, 9)
    except (OSError, ValueError, IndexError):
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.05)


if __name__ == "__main__":
    with TempPostgres() as server:
        print(server.url(), flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
