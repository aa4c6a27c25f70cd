"""Run one module as its container runs it: the hub from the environment, the service from the
module registry, until SIGTERM."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

from mfgvision.edge.hub import START_WAIT_S, Hub
from mfgvision.edge.inprocess import InProcessBroker
from mfgvision.edge.iotedge import (
    HubClosed,
    IoTEdgeHub,
    iot_edge_environment,
    module_id_from_environment,
)
from mfgvision.edge.routes import Route
from mfgvision.metrics.server import MetricsServer, served
from mfgvision.module_registry import ModuleContext, build_module, module_watch
from mfgvision.runtime import Paths, run_until_signalled
from mfgvision.store.database import database_url_from_env


def load_desired(path: Path | None) -> dict[str, Any]:
    """Desired properties for a module run without a hub, from a JSON or YAML file."""
    if path is None:
        return {}
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        import yaml

        return yaml.safe_load(text) or {}
    return json.loads(text)


def run_module(command: list[str], desired: Path | None, duration: float | None) -> int:
    """Run the module ``command`` (e.g. ``["cis"]``): through edgeHub when the IoT Edge environment
    is present (on a device, or against ``mfgvision edgehub``), else on its own with its outputs
    appended to ``<data>/<module>-outputs.jsonl`` and its desired properties from ``desired``. Its
    metrics are served as ``MFGVISION_METRICS_PORT`` says (docs/metrics.md)."""
    metrics = MetricsServer.from_env()  # a malformed port stops the module before it connects
    paths = Paths.from_env()
    paths.data.mkdir(parents=True, exist_ok=True)
    module_id = module_id_from_environment(command[0])
    hub: Hub
    if iot_edge_environment():
        edge_hub = IoTEdgeHub(module_id)
        try:
            _connect_until_signalled(edge_hub)
        except HubClosed:
            return 0
        hub = edge_hub
    else:
        broker = InProcessBroker(
            [Route("outputs", module_id, None, None, None)],
            upstream_file=paths.data / f"{module_id}-outputs.jsonl",
        )
        hub = broker.hub(module_id, load_desired(desired))
    ctx = ModuleContext(hub, paths, database_url_from_env(paths.default_db_path))
    service = build_module(command, ctx)
    if service is None:
        raise ValueError(f"'{command[0]}' is not a module of this suite")
    watch = module_watch(command, ctx, service)
    return run_until_signalled(served(metrics, [service], watch), duration)


def _connect_until_signalled(hub: IoTEdgeHub) -> None:
    """Connect to edgeHub (retrying) for up to ``START_WAIT_S``, then the module starts anyway;
    SIGTERM/SIGINT while still waiting ends the wait."""
    previous = {
        s: signal.signal(s, lambda *_: hub.abort()) for s in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        hub.connect(wait_s=START_WAIT_S)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
