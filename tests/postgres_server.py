"""A real PostgreSQL for the tests: Debian's server programs (initdb, postgres) on a temporary data
directory and a free loopback port, password authentication, torn down afterwards.

PostgreSQL refuses to run as root; as root (CI) the cluster belongs to the `postgres` system user
the Debian package creates. Where the programs are missing the postgres tests are skipped with the
reason, except in CI (CI=true), where that is a failure: scripts/install-system-deps installs them.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

USER = "llamastack"
PASSWORD = f"pw-{uuid.uuid4().hex}"  # a fresh secret per run: the tests check it never shows


def find_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    def __init__(self) -> None:
        initdb, postgres = find_bin("initdb"), find_bin("postgres")
        if initdb is None or postgres is None:
            raise FileNotFoundError(
                "PostgreSQL's initdb/postgres were not found: install Debian's postgresql package "
                "(scripts/install-system-deps does)."
            )
        self.postgres = postgres
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="llamastack-pg-"))  # not under pytest's 0700 root dir
        self.data = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self._user: str | None = None
        if os.geteuid() == 0:
            self._user = "postgres"
            entry = pwd.getpwnam("postgres")
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        pwfile = self.root / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        if self._user:
            os.chown(pwfile, pwd.getpwnam(self._user).pw_uid, -1)
        self._run(
            [initdb, "-D", str(self.data), "-U", USER, f"--pwfile={pwfile}", "--auth=scram-sha-256"],
            "initdb",
        )
        pwfile.unlink()
        self.process: subprocess.Popen[bytes] | None = None
        self.start()
        self._run_sql_as_superuser("postgres", "SELECT 1")

    def _run(self, args: list[str], what: str) -> None:
        result = subprocess.run(args, capture_output=True, user=self._user, cwd=self.root, env=self._env())
        if result.returncode != 0:
            problem = result.stderr.decode(errors="replace")
            raise RuntimeError(f"{what} failed ({result.returncode}): {problem}")

    def _env(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                self.postgres,
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={self.root}",
                "-c",
                "fsync=off",  # a throw-away cluster: speed over durability
                "-c",
                "max_connections=200",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            user=self._user,
            cwd=self.root,
            env=self._env(),
        )
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.process.returncode}: {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
                if self._ready():
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"postgres did not start in 30 s: {self.log()}")

    def _ready(self) -> bool:
        pg_isready = find_bin("pg_isready")
        if pg_isready is None:
            return True
        args = [pg_isready, "-h", "127.0.0.1", "-p", str(self.port), "-q"]
        return subprocess.run(args, env=self._env()).returncode == 0

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            # Fast shutdown (SIGINT): connected clients are cut off, as in a real restart.
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def _run_sql_as_superuser(self, database: str, sql: str) -> None:
        psql = find_bin("psql")
        if psql is None:
            raise FileNotFoundError("psql was not found (Debian's postgresql-client package)")
        env = {**self._env(), "PGPASSWORD": PASSWORD}
        args = [psql, "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, "-d", database, "-v"]
        result = subprocess.run(
            [*args, "ON_ERROR_STOP=1", "-q", "-c", sql], capture_output=True, env=env, timeout=30
        )
        if result.returncode != 0:
            raise RuntimeError(f"psql failed: {result.stderr.decode(errors='replace')}")

    def create_database(self) -> str:
        """A fresh, empty database; its URL (with the password)."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        self._run_sql_as_superuser("postgres", f"CREATE DATABASE {name}")
        return self.url(name)
