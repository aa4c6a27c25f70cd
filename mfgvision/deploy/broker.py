"""Mosquitto brokers for the edgeHub stand-in: one per module, TLS on ``<address>:8883``.

IoT Hub's MQTT topics for twins and direct methods (``$iothub/...``) carry no module name: a real
edgeHub keeps every module's session apart. Mosquitto cannot (Debian's 2.0.11 does not strip listener
mount points from outgoing topics), so each module gets a broker of its own on its own loopback
address (the SDK always connects to port 8883 of ``GatewayHostName``), and the stand-in joins every
broker as a client.

When started as root, Mosquitto drops to the ``mosquitto`` user, so its files (server key included)
are owned by that user and kept in a folder it can reach.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MQTT_TLS_PORT = 8883


class BrokerError(RuntimeError):
    """A broker that cannot be started (no Mosquitto, address in use, bad files)."""


def find_mosquitto() -> str | None:
    """The Mosquitto executable: ``MFGVISION_MOSQUITTO``, then PATH, then Debian's ``/usr/sbin``."""
    configured = os.environ.get("MFGVISION_MOSQUITTO")
    if configured:
        return configured if Path(configured).is_file() else None
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in (
        "/usr/sbin/mosquitto",
        "/usr/local/sbin/mosquitto",
        "/opt/homebrew/sbin/mosquitto",
    ):
        if Path(candidate).is_file():
            return candidate
    return None


@dataclass(frozen=True)
class RunAs:
    """The account Mosquitto ends up running as (``user`` line of its config)."""

    user: str | None
    uid: int
    gid: int


def broker_account() -> RunAs:
    """Who Mosquitto will run as when started by this process."""
    if os.geteuid() != 0:
        return RunAs(None, os.geteuid(), os.getegid())
    try:
        entry = pwd.getpwnam("mosquitto")
    except KeyError:
        return RunAs("root", 0, 0)
    return RunAs("mosquitto", entry.pw_uid, entry.pw_gid)


def _reachable(path: Path, account: RunAs) -> bool:
    """Whether ``account`` can walk down to ``path`` (execute permission on every parent)."""
    if account.uid == 0:
        return True
    for parent in [*reversed(path.resolve().parents)]:
        st = parent.stat()
        if st.st_uid == account.uid:
            ok = st.st_mode & 0o100
        elif st.st_gid == account.gid:
            ok = st.st_mode & 0o010
        else:
            ok = st.st_mode & 0o001
        if not ok:
            return False
    return True


def broker_root(state: Path, account: RunAs) -> Path:
    """Where broker files live: ``<state>/brokers``, or, when the broker's account cannot reach the
    state folder, a folder of its own under the temp folder (the same one for the same state)."""
    wanted = state / "brokers"
    if _reachable(state, account):
        return wanted
    digest = hashlib.sha1(str(state.resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"mfgvision-edgehub-{digest}"


def own(path: Path, account: RunAs) -> None:
    """Give ``path`` to the broker's account (only when running as root)."""
    if os.geteuid() == 0 and account.uid != 0:
        os.chown(path, account.uid, account.gid)


def port_open(address: str, port: int, timeout: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((address, port), timeout):
        return True
    return False


class MosquittoBroker:
    """One Mosquitto process with one TLS listener."""

    def __init__(
        self,
        name: str,
        address: str,
        folder: Path,
        cafile: Path,
        certfile: Path,
        keyfile: Path,
        account: RunAs,
        port: int = MQTT_TLS_PORT,
        max_queued_messages: int = 10_000,
        persistent: bool = True,
    ) -> None:
        self.name = name
        self.address = address
        self.port = port
        self.folder = folder
        self.cafile = cafile
        self.certfile = certfile
        self.keyfile = keyfile
        self.account = account
        self.max_queued_messages = max_queued_messages
        self.persistent = persistent
        self.config = folder / "mosquitto.conf"
        self.logfile = folder / "mosquitto.log"
        self.pidfile = folder / "broker.pid"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def has_persisted_sessions(self) -> bool:
        return (self.folder / "mosquitto.db").is_file()

    def write_config(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self.folder, 0o750)
        own(self.folder, self.account)
        lines = [
            f"# edgeHub stand-in broker for module {self.name}; written by mfgvision edgehub",
            *([f"user {self.account.user}"] if self.account.user else []),
            "per_listener_settings false",
            "allow_anonymous true",
            *(
                ["persistence true", f"persistence_location {self.folder}/", "autosave_interval 30"]
                if self.persistent
                else ["persistence false"]
            ),
            f"max_queued_messages {self.max_queued_messages}",
            "set_tcp_nodelay true",
            f"log_dest file {self.logfile}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
            f"listener {self.port} {self.address}",
            f"cafile {self.cafile}",
            f"certfile {self.certfile}",
            f"keyfile {self.keyfile}",
            "",
        ]
        self.config.write_text("\n".join(lines), encoding="utf-8")
        own(self.config, self.account)

    def start(self, executable: str, timeout: float = 30.0) -> None:
        """Start Mosquitto and wait until its listener accepts connections."""
        self._stop_leftover()
        if port_open(self.address, self.port):
            raise BrokerError(
                f"{self.address}:{self.port} is already in use (is another edgeHub stand-in running?)"
            )
        self.write_config()
        if self.logfile.exists():
            own(self.logfile, self.account)
        self.process = subprocess.Popen(
            [executable, "-c", str(self.config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.pidfile.write_text(str(self.process.pid), encoding="utf-8")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = (self.process.stderr.read() if self.process.stderr else b"").decode(
                    "utf-8", "replace"
                )
                raise BrokerError(
                    f"mosquitto for {self.name} exited ({self.process.returncode}): "
                    f"{err.strip() or self.log_tail()}"
                )
            if port_open(self.address, self.port):
                log.info(
                    "broker started",
                    extra={"module_name": self.name, "address": f"{self.address}:{self.port}"},
                )
                return
            time.sleep(0.05)
        self.stop()
        raise BrokerError(f"mosquitto for {self.name} did not listen within {timeout:g} s")

    def stop(self, timeout: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        if process is not None and process.stderr is not None:
            process.stderr.close()
        self.pidfile.unlink(missing_ok=True)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _stop_leftover(self) -> None:
        """A broker of ours left running by a stand-in that was killed: stop it by its pid."""
        try:
            pid = int(self.pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return
        if str(self.config).encode() not in cmdline:
            return
        log.warning("stopping a leftover broker", extra={"module_name": self.name, "pid": pid})
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if not Path(f"/proc/{pid}").exists():
                break
            time.sleep(0.05)
        self.pidfile.unlink(missing_ok=True)
