"""Run a deployment manifest on this machine, in one process.

Every module of the manifest that this package provides runs over the in-process hub with its desired
properties and the manifest's routes. SQLite stands in for MySQL and a local folder for Blob storage
unless real ones are configured (``MFGVISION_DB_URL``); everything written goes under one data folder.
A LineBridge serves its OPC UA server to this machine only, without login (``demo_opcua_server``).
"""

from __future__ import annotations

import json
import logging
import os
import socket
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from mfgvision.edge.inprocess import InProcessBroker
from mfgvision.line_bridge.opcua_server import endpoint_url
from mfgvision.manifest import ModuleSpec, load_manifest
from mfgvision.metrics.server import DEFAULT_PORT as METRICS_PORT
from mfgvision.metrics.server import MetricsServer
from mfgvision.module_registry import ModuleContext, build_module, module_watch
from mfgvision.runtime import REPO_ASSETS, Paths, Service, run_until_signalled
from mfgvision.settings import OpcUaServerSettings
from mfgvision.store.database import Database, database_url_from_env
from mfgvision.twin_config.registry import LocalRegistry

log = logging.getLogger(__name__)


def free_port(preferred: int, host: str = "127.0.0.1") -> int:
    """``preferred`` when a server can listen on it (connections of a previous run that linger in
    TIME_WAIT do not count, as the web servers reuse the address), else any free port, saying why."""
    for port in (preferred, 0):
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                continue
            chosen = int(sock.getsockname()[1])
        if preferred and chosen != preferred:
            print(f"Port {preferred} is taken by another program; using {chosen}.", flush=True)
        return chosen
    raise OSError("no free port")


def demo_opcua_server(port: int) -> OpcUaServerSettings:
    """The demo's OPC UA server: anonymous, reachable from this machine only."""
    return OpcUaServerSettings(host="127.0.0.1", port=port, anonymous=True)


def log_not_run_locally(name: str, spec: ModuleSpec) -> None:
    """Say that module ``name`` of the manifest is not one of ours, so it does not run here."""
    log.info(
        "module not run locally",
        extra={
            "module_name": name,
            "image": spec.image,
            "reason": "not a mfgvision module; SQLite and a local folder stand in for it",
        },
    )


def print_how_it_stops(duration: float | None) -> None:
    """Tell the user how the run ends: Ctrl-C, or after ``duration`` seconds."""
    print(
        "Press Ctrl-C to stop." if duration is None else f"Stopping after {duration:g} s.",
        flush=True,
    )


def demo_main(manifest_path: Path, data_dir: Path, duration: float | None, port: int) -> int:
    """Run the manifest's modules until Ctrl-C or ``duration`` seconds, then print a summary."""
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    manifest = load_manifest(manifest_path, variables=dict(os.environ))
    paths = Paths(assets=REPO_ASSETS, models=REPO_ASSETS / "models", data=data_dir)
    db_url = database_url_from_env(paths.default_db_path)
    broker = InProcessBroker(manifest.routes, upstream_file=data_dir / "upstream.jsonl")
    dashboard_port = free_port(port)
    # One endpoint for every module of the process; the module label tells them apart.
    metrics = MetricsServer("127.0.0.1", free_port(METRICS_PORT if port else 0))
    services: list[Service] = [metrics]
    dashboard_url = None
    opcua_urls: list[str] = []
    for name, spec in manifest.modules.items():
        desired = spec.desired
        if spec.command[:1] == ["line-bridge"]:
            opcua = demo_opcua_server(free_port(4840 if port else 0))
            desired = {**desired, "opcua_server": opcua.model_dump()}
            opcua_urls.append(endpoint_url(opcua))
        ctx = ModuleContext(broker.hub(name, desired), paths, db_url, "127.0.0.1", dashboard_port)
        service = build_module(spec.command, ctx)
        if service is None:
            log_not_run_locally(name, spec)
            continue
        metrics.watch(module_watch(spec.command, ctx, service))
        services.append(service)
        if spec.command[0] == "dashboard":
            dashboard_url = f"http://localhost:{dashboard_port}/"
    twin_config_url = None
    if not any(spec.command[:1] == ["twin-config"] for spec in manifest.modules.values()):
        # The demo's stand-in for the IoT Hub portal: edit the module twins of this process.
        twin_port = free_port(22000 if port else 0)
        commands = {name: spec.command for name, spec in manifest.modules.items()}
        ctx = ModuleContext(
            broker.hub("TwinConfig"),
            paths,
            db_url,
            twin_registry=LocalRegistry(broker, manifest.raw, commands, images=paths.images),
            twin_config_port=twin_port,
        )
        twin_service = build_module(["twin-config"], ctx)
        if twin_service is not None:
            metrics.watch(module_watch(["twin-config"], ctx, twin_service))
            services.append(twin_service)
            twin_config_url = f"http://localhost:{twin_port}/"
    print(f"mfgvision demo: {len(services) - 1} modules running, data in {data_dir}", flush=True)
    if dashboard_url:
        print(f"Dashboard: {dashboard_url}", flush=True)
    for url in opcua_urls:
        print(f"OPC UA: {url}", flush=True)
    if twin_config_url:
        print(f"Twin configuration: {twin_config_url}", flush=True)
    print(f"Metrics: {metrics.metrics_url}", flush=True)
    print_how_it_stops(duration)
    code = run_until_signalled(services, duration)
    print(json.dumps(summary(data_dir, paths, db_url), indent=2), flush=True)
    return code


def summary(data_dir: Path, paths: Paths, db_url: str) -> dict[str, Any]:
    """What the run left behind: rows in the database the modules used, images, uploaded copies,
    upstream messages."""
    out: dict[str, Any] = {"data_dir": str(data_dir)}
    db = Database(db_url)
    out["database"] = db.safe_url
    try:
        out.update(db.row_counts())
    except SQLAlchemyError as exc:
        out["database_error"] = str(getattr(exc, "orig", exc)).splitlines()[0][:300]
    finally:
        db.close()
    images = list(paths.images.glob("*.jpg")) if paths.images.is_dir() else []
    out["images"] = {
        kind: sum(1 for p in images if p.stem.endswith(kind))
        for kind in ("annotated", "raw", "retrain")
    }
    out["uploaded"] = sum(1 for p in paths.blobs.rglob("*.jpg")) if paths.blobs.is_dir() else 0
    upstream = data_dir / "upstream.jsonl"
    out["upstream_messages"] = len(upstream.read_text().splitlines()) if upstream.is_file() else 0
    return out
