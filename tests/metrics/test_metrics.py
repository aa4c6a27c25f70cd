"""``/metrics`` over real HTTP, read with prometheus_client's own parser (not with regexes)."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mfgvision.cli import main as cli_main
from mfgvision.deploy.standin import EdgeHubStandIn
from mfgvision.edge.inprocess import InProcessBroker
from mfgvision.edge.iotedge import IoTEdgeHub
from mfgvision.launch import run_module
from mfgvision.manifest import load_manifest
from mfgvision.metrics.modules import read_model_repo
from mfgvision.metrics.server import MetricsServer, ModuleWatch
from mfgvision.module_registry import ModuleContext, build_module, module_watch
from mfgvision.runtime import Paths
from tests.cis.conftest import LABELS, write_const_model, write_frames
from tests.edge.standin_env import (
    module,
    random_address_base,
    remove_broker_files,
    require_mosquitto,
    write_manifest,
)
from tests.factories import wait_for
from tests.metrics.exposition import Samples, scrape, scrape_when_up, value
from tests.services import free_port, wait_port

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 120.0
DOC = (REPO / "docs" / "metrics.md").read_text()
METRIC = re.compile(r"\bmfgvision_[a-z_]+")


def documented(name: str) -> bool:
    """Whether docs/metrics.md lists ``name`` (a histogram by its base name)."""
    base = re.sub(r"_(bucket|count|sum)$", "", name)
    return any(f"`{n}{{" in DOC or f"`{n}`" in DOC for n in (name, base))


def desired_cis(frames: Path, camera_id: str) -> dict[str, Any]:
    return {
        "camera_type": "folder",
        "camera_uri": str(frames),
        "camera_id": camera_id,
        "camera_fps": 20,
        "inference_fps": 0,
        "model_name": "const",
        "model_version": "1",
        "prob_threshold": 0.5,
    }


@pytest.fixture
def served_cis(tmp_path: Path) -> Iterator[tuple[Callable[[], None], MetricsServer, str]]:
    """A CIS over the in-process hub, watched by a metrics server as the runners do; the test may
    stop the CIS (first item) before the server."""
    module = f"cis-{uuid.uuid4().hex[:8]}"  # the hot-path series are per process: keep apart
    paths = Paths(tmp_path, write_const_model(tmp_path / "models"), tmp_path / "data")
    paths.data.mkdir()
    hub = InProcessBroker([]).hub(module, desired_cis(write_frames(tmp_path / "frames"), "cam-m"))
    ctx = ModuleContext(hub, paths, f"sqlite:///{paths.data / 'cis.db'}")
    service = build_module(["cis"], ctx)
    assert service is not None
    server = MetricsServer("127.0.0.1", 0)
    server.watch(module_watch(["cis"], ctx, service))
    server.start()
    service.start()
    running = [service]

    def stop_cis() -> None:
        while running:
            running.pop().stop()

    yield stop_cis, server, module
    stop_cis()
    server.stop()


def test_stage_histograms_and_inference_counters_grow_with_inferences(served_cis):
    stop_cis, server, module = served_cis
    mine = {"module": module, "camera_id": "cam-m"}
    infer = "mfgvision_cis_stage_duration_seconds_count"

    def inferences(samples: Samples) -> float:
        return value(samples, "mfgvision_inferences_total", **mine) or 0

    assert wait_for(lambda: inferences(scrape(server.metrics_url)) >= 2, timeout=60)
    first = scrape(server.metrics_url)
    assert value(first, infer, stage="infer", **mine) >= 1
    assert value(first, "mfgvision_module_state", module=module, state="running") == 1
    assert value(first, "mfgvision_module_info", module=module, kind="cis") == 1
    assert wait_for(lambda: inferences(scrape(server.metrics_url)) >= inferences(first) + 3, 60)
    assert value(scrape(server.metrics_url), infer, stage="infer", **mine) > value(
        first, infer, stage="infer", **mine
    )

    stop_cis()  # nothing moves now: every count must agree exactly
    last = scrape(server.metrics_url)
    n = inferences(last)
    for stage in ("preprocess", "infer", "postprocess"):
        assert value(last, infer, stage=stage, **mine) == n
        bucket = "mfgvision_cis_stage_duration_seconds_bucket"
        assert value(last, bucket, stage=stage, le="+Inf", **mine) == n
    total = value(last, "mfgvision_cis_stage_duration_seconds_sum", stage="infer", **mine)
    assert total > 0
    rows = value(last, "mfgvision_cis_events_total", event="rows_written", **mine)
    assert rows == n  # every frame of the constant model has detections: all are stored
    for stage in ("annotate", "encode", "write_file", "db_write", "frame_to_row"):
        assert value(last, infer, stage=stage, **mine) >= 1, stage
    # the constant model finds a scratch and a hole on every frame: NG each time
    assert value(last, "mfgvision_verdicts_total", verdict="NG", **mine) == n
    assert value(last, "mfgvision_verdicts_total", verdict="OK", **mine) == 0
    for label in LABELS[:2]:
        assert value(last, "mfgvision_detections_total", **{"class": label}, **mine) == n
    assert value(last, "mfgvision_detections_total", **{"class": LABELS[2]}, **mine) is None
    assert value(last, "mfgvision_cis_pending_rows", **mine) == 0
    assert value(last, "mfgvision_camera_frames_total", **mine) >= n


def test_a_failing_module_costs_only_its_own_samples(caplog):
    def broken() -> dict[str, Any]:
        raise RuntimeError("status unavailable")

    good_status = {"status": {"state": "running", "passes": 3, "invalid": []}, "models": {"a": {}}}
    half = {"status": {"state": "running", "passes": 5, "invalid": []}}  # "models" missing
    server = MetricsServer("127.0.0.1", 0)
    server.watch(
        ModuleWatch("good", "model-repo", status=lambda: good_status, reader=read_model_repo)
    )
    server.watch(ModuleWatch("broken", "model-repo", status=broken, reader=read_model_repo))
    server.watch(ModuleWatch("half", "model-repo", status=lambda: half, reader=read_model_repo))
    server.start()
    try:
        with caplog.at_level(logging.ERROR, logger="mfgvision.metrics.server"):
            scrape(server.metrics_url)
            samples = scrape(server.metrics_url)
    finally:
        server.stop()
    assert value(samples, "mfgvision_model_repo_passes_total", module="good") == 3
    assert value(samples, "mfgvision_model_repo_models", module="good") == 1
    for failing in ("broken", "half"):
        assert value(samples, "mfgvision_metrics_collect_errors_total", module=failing) == 2
        others = [n for (n, ls), _ in samples.items() if ("module", failing) in ls]
        assert others == ["mfgvision_metrics_collect_errors_total"], failing
    assert value(samples, "mfgvision_metrics_collect_errors_total", module="good") == 0
    assert value(samples, "process_resident_memory_bytes") > 0
    logged = [r for r in caplog.records if r.getMessage() == "module metrics not collected"]
    assert sorted(r.module_name for r in logged) == ["broken", "half"]  # once each, not per scrape


def test_only_the_metrics_path_is_served():
    server = MetricsServer("127.0.0.1", 0)
    server.start()
    try:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(server.url + "other", timeout=10)
        assert err.value.code == 404
    finally:
        server.stop()


def test_the_port_setting():
    assert MetricsServer.from_env({"MFGVISION_METRICS_PORT": "0"}) is None
    default = MetricsServer.from_env({})
    assert default is not None and (default.host, default.port) == ("127.0.0.1", 9464)
    chosen = MetricsServer.from_env(
        {"MFGVISION_METRICS_PORT": "9500", "MFGVISION_METRICS_HOST": "0.0.0.0"}
    )
    assert chosen is not None and (chosen.host, chosen.port) == ("0.0.0.0", 9500)
    for bad in ("metrics", "70000", "-1"):
        with pytest.raises(ValueError, match="MFGVISION_METRICS_PORT"):
            MetricsServer.from_env({"MFGVISION_METRICS_PORT": bad})


def test_a_taken_port_leaves_the_module_running_without_metrics(caplog):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = MetricsServer("127.0.0.1", taken.getsockname()[1])
        with caplog.at_level(logging.ERROR, logger="mfgvision.metrics.server"):
            server.start()
        server.stop()
    assert [r.getMessage() for r in caplog.records] == ["metrics not served"]


#: Each module kind the runner starts, and a family only that kind serves.
KINDS = {
    "cis": "mfgvision_inferences_total",
    "image-upload": "mfgvision_image_upload_queued",
    "line-bridge": "mfgvision_line_bridge_waiting_parts",
    "file-cleanup": "mfgvision_file_cleanup_passes_total",
    "model-repo": "mfgvision_model_repo_passes_total",
    "dashboard": "mfgvision_module_info",
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_module_the_runner_starts_serves_metrics_until_sigterm(tmp_path, kind):
    port = free_port()
    models = write_const_model(tmp_path / "models")
    desired = tmp_path / "desired.json"
    desired.write_text(json.dumps(desired_cis(write_frames(tmp_path / "frames"), "cam-r")))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("IOTEDGE_", "EdgeHub", "EdgeModule", "MFGVISION_"))
    }
    env.update(
        MFGVISION_METRICS_PORT=str(port),
        MFGVISION_DATA=str(tmp_path / "data"),
        MFGVISION_ASSETS=str(tmp_path),
        MFGVISION_MODELS=str(models),
    )
    args = ["--port", "0"] if kind == "dashboard" else ["--desired", str(desired)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "mfgvision", kind, *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        assert wait_port(port, 60, proc), proc.stderr.read() if proc.poll() is not None else ""
        assert wait_for(lambda: value(scrape(url), KINDS[kind], module=kind) is not None, 60)
        samples = scrape(url)
        assert value(samples, "mfgvision_module_info", module=kind, kind=kind) == 1
        assert value(samples, "process_open_fds") > 0
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err[-3000:]
        with pytest.raises(OSError):
            scrape(url)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.mark.slow
def test_the_demo_serves_every_module_on_one_endpoint(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "mfgvision", "demo", "--data-dir", str(tmp_path), "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        lines: list[str] = []
        while not lines or not lines[-1].startswith("Metrics: "):
            assert proc.stdout is not None and proc.poll() is None and len(lines) < 20, lines
            lines.append(proc.stdout.readline())
        assert sum(line.startswith("Metrics: ") for line in lines) == 1
        url = lines[-1].split(": ", 1)[1].strip()
        assert url.endswith("/metrics")

        def cis_inferred() -> bool:
            samples = scrape_when_up(url)
            return (value(samples, "mfgvision_inferences_total", module="CIS1") or 0) > 0

        assert wait_for(cis_inferred, 60)
        samples = scrape(url)
        kinds = {
            dict(labels)["module"]: dict(labels)["kind"]
            for (name, labels), _ in samples.items()
            if name == "mfgvision_module_info"
        }
        assert kinds == {
            "ModelRepo": "model-repo",
            "CIS1": "cis",
            "ImageUpload": "image-upload",
            "LineBridge": "line-bridge",
            "Dashboard": "dashboard",
            "FileCleanup": "file-cleanup",
            "TwinConfig": "twin-config",
        }
        assert value(samples, "mfgvision_image_upload_queued", module="ImageUpload") is not None
        assert value(samples, "mfgvision_line_bridge_waiting_parts", module="LineBridge") == 0
        stage = "mfgvision_cis_stage_duration_seconds_count"
        assert value(samples, stage, module="CIS1", stage="infer") > 0
        served = {name for name, _ in samples if name.startswith("mfgvision_")}
        assert [name for name in sorted(served) if not documented(name)] == []
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_the_grafana_dashboard_queries_documented_metrics():
    dashboard = json.loads((REPO / "docs" / "grafana" / "mfgvision.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    names = {name for expr in exprs for name in METRIC.findall(expr)}
    assert len(names) >= 20
    assert [name for name in sorted(names) if not documented(name)] == []
    assert any("histogram_quantile(0.99" in e for e in exprs)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


@pytest.mark.slow
def test_the_edgehub_connection_is_served_across_a_restart(tmp_path, monkeypatch):
    require_mosquitto()
    manifest = write_manifest(tmp_path / "deployment.json", {"CIS1": module(["cis"])}, {})
    state = tmp_path / "edgehub"
    standin = EdgeHubStandIn(load_manifest(manifest), state, address_base=random_address_base())
    standin.start()
    for key, env_value in standin.module_environment("CIS1").items():
        monkeypatch.setenv(key, env_value)
    hub = IoTEdgeHub("CIS1", backoff_start_s=0.2, backoff_max_s=2, sdk_timeout_s=5)
    server = MetricsServer("127.0.0.1", 0)
    server.watch(ModuleWatch("CIS1", "cis", hub))
    server.start()

    def hub_state() -> tuple[float | None, float | None]:
        samples = scrape(server.metrics_url)
        return (
            value(samples, "mfgvision_hub_connected", module="CIS1"),
            value(samples, "mfgvision_hub_disconnects_total", module="CIS1"),
        )

    try:
        assert hub.connect(wait_s=TIMEOUT)
        assert hub_state() == (1, 0)
        standin.stop()
        assert wait_for(lambda: hub_state() == (0, 1), TIMEOUT), hub_state()
        standin.start()
        assert wait_for(lambda: hub_state() == (1, 1), TIMEOUT), hub_state()
    finally:
        server.stop()
        hub.disconnect()
        standin.stop()
        remove_broker_files(state)


def test_a_malformed_port_stops_a_module_before_it_starts(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("MFGVISION_METRICS_PORT", "nine")
    monkeypatch.setenv("MFGVISION_DATA", str(tmp_path / "data"))
    with pytest.raises(ValueError, match="MFGVISION_METRICS_PORT must be a port number or 0"):
        run_module(["image-upload"], None, 1.0)
    assert not (tmp_path / "data").exists()  # nothing started
    assert cli_main(["dashboard", "--port", "0"]) == 2
    assert "MFGVISION_METRICS_PORT" in capsys.readouterr().err
