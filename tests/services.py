"""Real services for the tests: Azurite (Blob Storage emulator) and private MariaDB servers started on
free ports (a test may stop and start them without touching the system server), and a fresh database
on the MariaDB server of the machine.

A service that cannot be had makes its tests skip with the reason, unless
``MFGVISION_REQUIRE_SERVICES=1`` (CI): then they fail.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from mfgvision.store.database import Database
from mfgvision.store.schema import metadata

REPO = Path(__file__).resolve().parent.parent
REQUIRE_ENV = "MFGVISION_REQUIRE_SERVICES"
DEFAULT_SERVER_URL = "mysql+mysqlconnector://root:@127.0.0.1:3306"
SERVER_URL_ENV = "MFGVISION_TEST_MYSQL_URL"
AZURITE_BIN = REPO / "node_modules" / ".bin" / "azurite-blob"
AZURITE_ACCOUNT = "devstoreaccount1"
# The emulator's published, well-known development key (not a secret).
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
START_TIMEOUT_S = 60.0


def unavailable(reason: str) -> None:
    """Skip, or fail when the environment says services are required."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1)", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(
    port: int, timeout: float = START_TIMEOUT_S, proc: subprocess.Popen | None = None
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.1)
    return False


def _terminate(proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """SIGTERM, wait, then SIGKILL a process this module started."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


class Azurite:
    """One Azurite blob service on its own port; in memory, or persisted under ``location``."""

    def __init__(
        self, workdir: Path, location: Path | None = None, debug_log: Path | None = None
    ) -> None:
        self.workdir = workdir
        self.location = location
        self.debug_log = debug_log
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT};"
        )

    def start(self) -> None:
        if not AZURITE_BIN.exists():
            unavailable(f"Azurite not installed ({AZURITE_BIN} missing; run `npm ci`)")
        if shutil.which("node") is None:
            unavailable("Azurite needs node, which is not installed")
        args = [
            str(AZURITE_BIN),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(self.port),
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--loose",
            "--silent",
        ]
        if self.location is None:
            args += ["--inMemoryPersistence", "--extentMemoryLimit", "512"]
        else:
            self.location.mkdir(parents=True, exist_ok=True)
            args += ["--location", str(self.location)]
        if self.debug_log is not None:
            args += ["--debug", str(self.debug_log)]
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / f"azurite-{self.port}.log").open("ab")
        self.proc = subprocess.Popen(
            args, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()
        if not wait_port(self.port, proc=self.proc):
            self.stop()
            unavailable(f"Azurite did not start on port {self.port}; see {self.workdir}")

    def stop(self) -> None:
        if self.proc is not None:
            _terminate(self.proc)
            self.proc = None


class PrivateMariaDB:
    """A throwaway MariaDB server under ``root`` on its own port (never the system one on 3306)."""

    def __init__(self, root: Path, extra_args: Sequence[str] = ()) -> None:
        self.root = root
        self.extra_args = list(extra_args)
        self.data = root / "data"
        self.socket = root / "run" / "mysqld.sock"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mysql+mysqlconnector://edge:edgepw@127.0.0.1:{self.port}/edge"

    def install(self) -> None:
        install_db = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
        server = self._server_binary()
        if install_db is None or server is None:
            unavailable("MariaDB server binaries (mariadbd, mariadb-install-db) not installed")
        (self.root / "run").mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [
                install_db,
                "--no-defaults",
                "--user=root",
                f"--datadir={self.data}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            unavailable(f"mariadb-install-db failed: {result.stderr[-500:]}")
        self.start()
        self.sql(
            "CREATE DATABASE edge; CREATE USER 'edge'@'127.0.0.1' IDENTIFIED BY 'edgepw'; "
            "GRANT ALL ON edge.* TO 'edge'@'127.0.0.1';"
        )

    def start(self) -> None:
        server = self._server_binary()
        assert server is not None
        log = (self.root / "server.out").open("ab")
        self.proc = subprocess.Popen(
            [
                server,
                "--no-defaults",
                "--user=root",
                f"--datadir={self.data}",
                f"--socket={self.socket}",
                f"--pid-file={self.root / 'run' / 'mysqld.pid'}",
                "--bind-address=127.0.0.1",
                f"--port={self.port}",
                "--skip-name-resolve",
                f"--log-error={self.root / 'error.log'}",
                "--innodb-buffer-pool-size=32M",
                "--innodb-log-file-size=8M",
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        if not wait_port(self.port, timeout=120, proc=self.proc):
            self.stop()
            unavailable(f"private MariaDB did not start; see {self.root / 'error.log'}")

    def stop(self) -> None:
        """A clean shutdown (SIGTERM), waited for."""
        if self.proc is not None:
            _terminate(self.proc, timeout=120)
            self.proc = None

    def sql(self, statements: str) -> None:
        """Run ``statements`` as root over the server's socket."""
        client = shutil.which("mariadb") or shutil.which("mysql")
        if client is None:
            unavailable("the mariadb client is not installed")
        subprocess.run(
            [client, "--no-defaults", f"--socket={self.socket}", "-uroot", "-e", statements],
            check=True,
            capture_output=True,
            timeout=60,
        )

    @staticmethod
    def _server_binary() -> str | None:
        for name in ("mariadbd", "mysqld"):
            found = shutil.which(name) or (
                f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None
            )
            if found:
                return found
        return None


@contextlib.contextmanager
def tmpfs(mount_point: Path, size: str) -> Iterator[Path]:
    """A real volume of ``size`` (e.g. ``4m``) mounted at ``mount_point`` for a full-disk test;
    skipped where this process may not mount one."""
    mount = shutil.which("mount")
    if os.geteuid() != 0 or mount is None:
        pytest.skip("mounting a tmpfs needs root")
    mount_point.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [mount, "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(volume: Path) -> Path:
    """Write a file that takes every free byte of ``volume``; delete it to free the space again."""
    filler = volume / "filler.bin"
    chunk = bytes(65536)
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, chunk)
    finally:
        os.close(fd)
    return filler


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """An in-memory Azurite shared by the session's tests (each test uses its own containers)."""
    server = Azurite(tmp_path_factory.mktemp("azurite"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def mariadb_url() -> Iterator[str]:
    """URL of a fresh, uniquely named database on the MariaDB server; dropped afterwards.

    ``MFGVISION_TEST_MYSQL_URL`` names another server (no database part).
    """
    server = make_url(os.environ.get(SERVER_URL_ENV, DEFAULT_SERVER_URL))
    name = f"mfgvision_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, connect_args={"connection_timeout": 5})
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    except SQLAlchemyError as exc:
        admin.dispose()
        shown = server.render_as_string(hide_password=True)
        detail = str(getattr(exc, "orig", exc)).splitlines()[0]
        unavailable(f"MariaDB/MySQL server not reachable at {shown}: {detail}")
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


@pytest.fixture(name="db", params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mysql)])
def database_on_each_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """``db``: a ``Database`` with its schema created, on each backend; tables dropped afterwards.
    A test module or conftest takes it by importing this function."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'nested' / 'edge.db'}"
    else:
        url = request.getfixturevalue("mariadb_url")
    database = Database(url)
    database.create_schema()
    try:
        yield database
    finally:
        drop_schema(database)
        database.close()


def drop_schema(database: Database) -> None:
    """Drop the product's tables and Alembic's version table, leaving an empty database."""
    metadata.drop_all(database.engine)
    with database.engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS detection_data"))
        conn.execute(text("DROP TABLE IF EXISTS inference_data"))
        conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
