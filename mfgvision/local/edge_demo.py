"""Run a deployment manifest on this machine the way a device runs it, without Docker.

Every mfgvision module of the manifest runs as its own process (``python -m mfgvision <Cmd>``) on the
real IoT Edge module client, connected to the local edgeHub stand-in (``mfgvision edgehub``), which
serves the module twins and direct methods and applies the manifest's routes. As in the one-process
demo, SQLite and a local folder stand in for MySQL and Blob storage unless ``MFGVISION_DB_URL`` /
``MFGVISION_STORAGE_CONNECTION_STRING`` are set, and everything is written under one data folder.
Assets and models come from the repository's ``edge_assets/`` unless ``MFGVISION_ASSETS`` /
``MFGVISION_MODELS`` say otherwise. The manifest's ``restartPolicy`` is honoured: a module that exits
is started again (with backoff). Each module's output goes to ``<data>/logs/<Module>.log``; each serves
its metrics on a free port of its own (printed at start).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from mfgvision.deploy.control import StandInError
from mfgvision.deploy.standin import DEFAULT_ADDRESS_BASE, EdgeHubStandIn
from mfgvision.local.demo import free_port, log_not_run_locally, print_how_it_stops, summary
from mfgvision.manifest import Manifest, ModuleSpec, load_manifest
from mfgvision.metrics.server import PORT_ENV as METRICS_PORT_ENV
from mfgvision.runtime import REPO_ASSETS, Paths, run_until_signalled
from mfgvision.store.database import database_url_from_env

log = logging.getLogger(__name__)

# Set for each module from the local data folder; the manifest's values are container paths.
LOCAL_KEYS = (
    "MFGVISION_ASSETS",
    "MFGVISION_MODELS",
    "MFGVISION_DATA",
    "MFGVISION_DB_URL",
    "MFGVISION_STORAGE_CONNECTION_STRING",
)


def module_environment(
    spec: ModuleSpec, paths: Paths, db_url: str, hub_env: dict[str, str]
) -> dict[str, str]:
    """The environment of one module process: ours, the manifest's (minus container paths and
    unresolved variables), local folders, and what it needs to reach the stand-in."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("IOTEDGE_", "EdgeHub", "EdgeModule"))
    }
    for key, value in spec.env.items():
        if key in LOCAL_KEYS or "${" in value or value.startswith("/"):
            continue
        env[key] = value
    env.update(
        MFGVISION_ASSETS=str(paths.assets),
        MFGVISION_MODELS=str(paths.models),
        MFGVISION_DATA=str(paths.data),
        MFGVISION_DB_URL=db_url,
        PYTHONUNBUFFERED="1",
    )
    env.update(hub_env)
    return env


def metrics_port(used: set[int]) -> int:
    """A free port for one module's metrics, not handed to another module already."""
    while (port := free_port(0)) in used:
        pass
    used.add(port)
    return port


def local_command(command: list[str], dashboard_port: int) -> list[str]:
    """The module's ``Cmd`` adjusted for this machine (the dashboard on localhost, a free port)."""
    if command[:1] == ["dashboard"]:
        return [*command, "--host", "127.0.0.1", "--port", str(dashboard_port)]
    return list(command)


@dataclass
class ModuleProcess:
    name: str
    command: list[str]
    env: dict[str, str]
    restart_policy: str
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    _log: IO[bytes] | None = field(default=None, repr=False)
    _terminated: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> None:
        if self._log is None:
            self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mfgvision", *self.command],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        log.info(
            "module started",
            extra={"module_name": self.name, "pid": self.process.pid, "cmd": self.command},
        )

    def terminate(self) -> None:
        """Send SIGTERM (once) without waiting for the module to end."""
        proc = self.process
        if proc is not None and proc.poll() is None and proc is not self._terminated:
            proc.send_signal(signal.SIGTERM)
            self._terminated = proc

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (unless :meth:`terminate` sent it), wait up to ``timeout`` s, else kill."""
        proc = self.process
        if proc is not None and proc.poll() is None:
            self.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("module did not stop, killing it", extra={"module_name": self.name})
                proc.kill()
                proc.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None
        return proc.returncode if proc is not None else None


class Supervisor:
    """Starts module processes, restarts them per ``restartPolicy``, stops them on request."""

    def __init__(self, modules: list[ModuleProcess]) -> None:
        self.modules = modules
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="supervisor", daemon=True)
        self.exit_codes: dict[str, int | None] = {}

    def start(self) -> None:
        for module in self.modules:
            module.start()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        for module in self.modules:  # every module stops at once
            module.terminate()
        for module in reversed(self.modules):
            self.exit_codes[module.name] = module.stop()

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            for module in self.modules:
                proc = module.process
                if proc is None or proc.poll() is None:
                    continue
                code = proc.returncode
                restart = module.restart_policy == "always" or (
                    module.restart_policy == "on-failure" and code != 0
                )
                if not restart:
                    continue
                now = time.monotonic()
                if module.next_start == 0.0:
                    delay = min(60.0, 2.0 ** min(module.restarts, 6))
                    module.next_start = now + delay
                    log.warning(
                        "module exited, restarting",
                        extra={"module_name": module.name, "code": code, "retry_in_s": delay},
                    )
                elif now >= module.next_start:
                    module.restarts += 1
                    module.next_start = 0.0
                    module.start()


class _Running:
    """A service that is already started: only its ``stop`` is left to call."""

    def __init__(self, service: EdgeHubStandIn) -> None:
        self.service = service

    def start(self) -> None:
        pass

    def stop(self) -> None:
        self.service.stop()


def _restart_policy(manifest: Manifest, name: str) -> str:
    agent = manifest.raw["modulesContent"]["$edgeAgent"]["properties.desired"]
    return str((agent.get("modules") or {}).get(name, {}).get("restartPolicy", "always"))


def edge_demo_main(manifest_path: Path, data_dir: Path, duration: float | None, port: int) -> int:
    """Run every module of the manifest as a process through the stand-in; print a summary."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    logs = data_dir / "logs"
    logs.mkdir(exist_ok=True)
    manifest = load_manifest(manifest_path, variables=dict(os.environ))
    assets = Path(os.environ.get("MFGVISION_ASSETS", REPO_ASSETS))
    models = Path(os.environ.get("MFGVISION_MODELS", assets / "models"))
    paths = Paths(assets=assets, models=models, data=data_dir)
    db_url = database_url_from_env(paths.default_db_path)
    standin = EdgeHubStandIn(
        manifest,
        data_dir / "edgehub",
        address_base=os.environ.get("MFGVISION_EDGEHUB_ADDRESS", DEFAULT_ADDRESS_BASE),
        upstream_file=data_dir / "upstream.jsonl",
    )
    try:
        standin.start()
    except StandInError as exc:
        print(f"mfgvision demo --edge: {exc}", file=sys.stderr)
        return 2
    dashboard_port = free_port(port)
    processes: list[ModuleProcess] = []
    dashboard_url = None
    metrics_ports: set[int] = set()
    metrics_urls: list[str] = []
    for name, spec in manifest.modules.items():
        if name not in standin.addresses:
            log_not_run_locally(name, spec)
            continue
        env = module_environment(spec, paths, db_url, standin.module_environment(name))
        if env.get(METRICS_PORT_ENV) != "0":  # each process on a port of its own
            env[METRICS_PORT_ENV] = str(metrics_port(metrics_ports))
            metrics_urls.append(f"http://localhost:{env[METRICS_PORT_ENV]}/metrics ({name})")
        processes.append(
            ModuleProcess(
                name=name,
                command=local_command(spec.command, dashboard_port),
                env=env,
                restart_policy=_restart_policy(manifest, name),
                log_path=logs / f"{name}.log",
            )
        )
        if spec.command[0] == "dashboard":
            dashboard_url = f"http://localhost:{dashboard_port}/"
    supervisor = Supervisor(processes)
    print(
        f"mfgvision demo --edge: {len(processes)} module processes through the edgeHub stand-in, "
        f"data in {data_dir}, logs in {logs}",
        flush=True,
    )
    state = standin.state
    print(f"Twins and methods: mfgvision edgehub --state {state} twin|patch|call ...", flush=True)
    if dashboard_url:
        print(f"Dashboard: {dashboard_url}", flush=True)
    if metrics_urls:
        print(f"Metrics: {', '.join(metrics_urls)}", flush=True)
    print_how_it_stops(duration)
    code = run_until_signalled([_Running(standin), supervisor], duration)
    result = summary(data_dir, paths, db_url)
    result["modules"] = {name: {"exit_code": c} for name, c in supervisor.exit_codes.items()}
    print(json.dumps(result, indent=2), flush=True)
    return code
