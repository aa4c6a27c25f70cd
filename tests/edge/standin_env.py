"""Shared set-up for tests that run modules through the edgeHub stand-in with the real SDK."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from mfgvision.deploy.broker import broker_account, broker_root, find_mosquitto
from mfgvision.deploy.control import ControlClient, wait_until
from tests.cis.conftest import FRAME_H, FRAME_W, LABELS, yolo_model_bytes
from tests.inference.graphs import write_model_dir

REPO = Path(__file__).resolve().parents[2]


def remove_broker_files(state: Path) -> None:
    """Broker files kept outside the state folder (when the broker's user cannot reach it)."""
    root = broker_root(state, broker_account())
    if not root.is_relative_to(state):
        shutil.rmtree(root, ignore_errors=True)


def require_mosquitto() -> str:
    """The Mosquitto executable; skips the test when there is none (fails under CI)."""
    executable = find_mosquitto()
    if executable is None:
        if os.environ.get("MFGVISION_REQUIRE_SERVICES") == "1":
            pytest.fail("mosquitto is not installed but MFGVISION_REQUIRE_SERVICES=1")
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    return executable


def random_address_base() -> str:
    """A loopback range of its own, so a stand-in a developer runs on 127.0.0.x is not disturbed."""
    return f"127.0.{random.randint(20, 250)}.2"


def write_assets(root: Path) -> tuple[Path, Path]:
    """A constant-output YOLO model and four frames."""
    models = root / "models"
    write_model_dir(models, yolo_model_bytes(), LABELS, name="const", version="1")
    frames = root / "frames"
    frames.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(4):
        img = rng.integers(0, 255, (FRAME_H, FRAME_W, 3), dtype=np.uint8)
        cv2.imwrite(str(frames / f"f{i}.jpg"), img)
    return models, frames


def module(cmd: list[str], **desired: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    spec = {
        "version": "1.0",
        "type": "docker",
        "status": "running",
        "restartPolicy": "always",
        "settings": {"image": "mfgvision", "createOptions": json.dumps({"Cmd": cmd})},
    }
    return spec, desired


def write_manifest(
    path: Path, modules: dict[str, tuple[dict, dict]], routes: dict[str, str]
) -> Path:
    content: dict[str, Any] = {
        "$edgeAgent": {"properties.desired": {"modules": {n: s for n, (s, _) in modules.items()}}},
        "$edgeHub": {
            "properties.desired": {
                "schemaVersion": "1.2",
                "routes": routes,
                "storeAndForwardConfiguration": {"timeToLiveSecs": 600},
            }
        },
    }
    for name, (_, desired) in modules.items():
        if desired:
            content[name] = {"properties.desired": desired}
    path.write_text(json.dumps({"modulesContent": content}, indent=1))
    return path


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mfgvision", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class StandInProcess:
    """``mfgvision edgehub serve`` as a subprocess, plus module processes attached to it."""

    def __init__(self, root: Path, manifest: Path) -> None:
        self.root = root
        self.state = root / "edgehub"
        self.manifest = manifest
        self.address_base = random_address_base()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.client: ControlClient | None = None

    def edgehub_args(self, *args: str) -> list[str]:
        return [
            "edgehub",
            "--state",
            str(self.state),
            "--manifest",
            str(self.manifest),
            "--address-base",
            self.address_base,
            *args,
        ]

    def start(self, timeout: float = 120) -> ControlClient:
        self._spawn("edgehub", self.edgehub_args("serve"), dict(os.environ))
        found: list[ControlClient] = []

        def ready() -> bool:
            if self.procs["edgehub"].poll() is not None:
                raise AssertionError(f"stand-in exited: {self.log('edgehub')[-3000:]}")
            client = ControlClient.from_state(self.state)
            if client is not None:
                found.append(client)
            return bool(found)

        assert wait_until(ready, timeout), self.log("edgehub")[-3000:]
        self.client = found[0]
        return self.client

    def stop_standin(self) -> int | None:
        """Stop the stand-in (and its brokers) while the modules keep running."""
        proc = self.procs["edgehub"]
        proc.send_signal(signal.SIGTERM)
        return proc.wait(60)

    def module_env(self, module: str, **extra: str) -> dict[str, str]:
        endpoints = json.loads((self.state / "endpoints.json").read_text())[module]
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("IOTEDGE_", "EdgeHub", "EdgeModule", "MFGVISION_"))
        }
        env.update(
            EdgeHubConnectionString=endpoints["EdgeHubConnectionString"],
            EdgeModuleCACertificateFile=endpoints["EdgeModuleCACertificateFile"],
            MFGVISION_LOG_LEVEL="INFO",
            **extra,
        )
        return env

    def run_module(self, name: str, cmd: list[str], env: dict[str, str]) -> None:
        self._spawn(name, cmd, env)

    def _spawn(self, name: str, cmd: list[str], env: dict[str, str]) -> None:
        log = (self.root / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "mfgvision", *cmd],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def log(self, name: str) -> str:
        path = self.root / f"{name}.log"
        return path.read_text(errors="replace") if path.is_file() else ""

    def alive(self, name: str) -> bool:
        return self.procs[name].poll() is None

    def stop(self) -> dict[str, int | None]:
        codes: dict[str, int | None] = {}
        for name in [n for n in self.procs if n != "edgehub"] + ["edgehub"]:
            proc = self.procs.get(name)
            if proc is None:
                continue
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
            codes[name] = proc.returncode
        remove_broker_files(self.state)
        return codes
