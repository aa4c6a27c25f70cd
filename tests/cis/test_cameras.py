"""One CIS module running several cameras: rows, status and messages per camera, one model session
per distinct model, cameras added, changed and removed while the others keep running, methods and
trigger messages for one camera, and a restart that replays what a killed writer left."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mfgvision.cis.messages import TRIGGER_INPUT
from mfgvision.cis.service import CisService
from mfgvision.edge.hub import HubMessage
from mfgvision.edge.inprocess import InProcessBroker
from mfgvision.edge.routes import parse_route
from mfgvision.metrics.modules import Families, read_cis
from mfgvision.runtime import Paths
from mfgvision.store.database import Database
from mfgvision.store.status import read_statuses
from tests.cis.conftest import write_frames
from tests.cis.outcomes import OWNER
from tests.factories import recent, wait_for
from tests.services import REPO

MODULE = "cam"
CAMERAS_KILLED = ("cam-a", "cam-b", "cam-gone")
ROUTES = [parse_route("up", f"FROM /messages/modules/{MODULE}/outputs/inference INTO $upstream")]


def _twin(frames_dir: Path, cameras: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """The module's keys (a folder camera, the constant model) and its ``cameras``."""
    return {
        "camera_type": "folder",
        "camera_uri": str(frames_dir),
        "camera_fps": 10,
        "inference_fps": 4,
        "model_name": "const",
        "model_version": "1",
        "retrain_interval_s": 3600,
        "upload_receipts": False,
        "cameras": cameras,
        **extra,
    }


class Module:
    """A running CIS module of several cameras, its broker and a reader of its database."""

    def __init__(self, tmp_path: Path, models_dir: Path, desired: dict[str, Any]) -> None:
        self.paths = Paths(assets=tmp_path, models=models_dir, data=tmp_path / "data")
        self.broker = InProcessBroker(ROUTES)
        url = f"sqlite:///{tmp_path / 'data' / 'cis.db'}"
        self.cis = CisService(
            self.broker.hub(MODULE, desired), self.paths, Database(url), report_every_s=0.2
        )
        self.hub = self.broker.hub(MODULE)
        self.db = Database(url)

    def rows(self, camera_id: str) -> int:
        return len(recent(self.db, 1000, camera_id))

    def inferences(self, camera_id: str) -> int:
        return self.cis.pipelines[camera_id].metrics.counters["inferences"]

    def flowing(self, camera_id: str) -> bool:
        """The camera's frames keep being inferred and stored."""
        inferred, stored = self.inferences(camera_id), self.rows(camera_id)
        return wait_for(
            lambda: self.inferences(camera_id) >= inferred + 2 and self.rows(camera_id) > stored
        )

    def patch(self, patch: dict[str, Any]) -> None:
        version = self.broker.patch_desired(MODULE, patch)
        assert wait_for(lambda: self.reported()["config"].get("applied_version") == version)

    def reported(self) -> dict[str, Any]:
        return self.hub.get_twin()["reported"]

    def upstream(self) -> list[dict[str, Any]]:
        return [m.json() for _, output, m in list(self.broker.upstream) if output == "inference"]


@pytest.fixture
def module(tmp_path: Path, models_dir: Path) -> Iterator[Any]:
    shutil.copytree(models_dir / "const" / "1", models_dir / "const" / "2")
    started: list[Module] = []

    def start(desired: dict[str, Any]) -> Module:
        running = Module(tmp_path, models_dir, desired)
        running.cis.start()
        started.append(running)
        return running

    yield start
    for running in started:
        running.cis.stop()
        running.db.close()


def test_three_cameras_store_per_camera_on_one_session_per_model(module, frames_dir):
    m = module(
        _twin(
            frames_dir,
            [
                {"camera_id": "cam-a", "camera_location": "hall"},
                {"camera_id": "cam-b", "prob_threshold": 0.8},
                {"camera_id": "cam-c", "model_version": "2"},
            ],
        )
    )
    cameras = ("cam-a", "cam-b", "cam-c")
    assert wait_for(lambda: all(m.rows(c) >= 2 for c in cameras), timeout=60)
    a, b, c = (m.cis.pipelines[camera] for camera in cameras)
    # cam-a and cam-b use the module's model: one session; cam-c's model is a second one
    assert a.models is b.models and c.models is not a.models
    assert sorted(r.label for r in m.cis.models.loaders()) == ["const/1", "const/2"]
    assert a.models.current is b.models.current
    # each camera's rows are made with its own settings over the module's
    row_a, row_b, row_c = (recent(m.db, 1, camera)[0] for camera in cameras)
    assert row_a.camera_name == "hall-top" and row_a.prob_threshold == 0.5
    assert (row_b.prob_threshold, row_b.verdict) == (0.8, "NG")  # the 0.9 box only
    assert len(row_b.detections) == 1
    assert (row_c.model_version, row_a.model_version) == ("2", "1")
    # messages name their camera; each camera has its status file
    assert wait_for(lambda: {b["camera_id"] for b in m.upstream()} >= set(cameras))
    statuses = read_statuses(m.paths.data / "status")
    assert set(statuses) == set(cameras)
    assert all(s.module_id == MODULE and s.state == "running" for s in statuses.values())
    assert statuses["cam-a"].location == "hall" and statuses["cam-c"].model == "const/2"
    # reported: the module's state over its cameras, and a short entry per camera
    assert wait_for(lambda: m.reported().get("status", {}).get("state") == "running")
    entries = m.reported()["cameras"]
    assert set(entries) == set(cameras)
    assert entries["cam-c"]["model"] == "const/2" and entries["cam-a"]["state"] == "running"
    assert set(entries["cam-a"]) == {"state", "fps", "model", "error"}
    assert m.cis.pipeline is None  # no single pipeline in a module of several cameras
    # metrics: each camera's series under its id, what they share under an empty one
    out = Families(module=MODULE)
    read_cis(m.cis.status(), out)
    samples = {(s.name, s.labels["camera_id"]) for f in out.metrics() for s in f.samples}
    assert {("mfgvision_inferences_total", c) for c in cameras} <= samples
    assert ("mfgvision_cis_pending_rows", "") in samples
    assert not any(name == "mfgvision_cis_pending_rows" and c for name, c in samples)


def test_a_camera_added_changed_or_removed_leaves_the_others_running(module, frames_dir, tmp_path):
    entry_a, entry_b = {"camera_id": "cam-a"}, {"camera_id": "cam-b"}
    m = module(_twin(frames_dir, [entry_a, entry_b]))
    assert wait_for(lambda: m.rows("cam-a") >= 1 and m.rows("cam-b") >= 1, timeout=60)
    a, b = m.cis.pipelines["cam-a"], m.cis.pipelines["cam-b"]
    grabber_a, grabber_b = a.grabber, b.grabber
    assert grabber_a is not None and grabber_b is not None
    before = dict(a.metrics.counters)  # a frame may come before the model was loaded

    m.patch({"cameras": [entry_a, entry_b, {"camera_id": "cam-c"}]})  # added
    assert wait_for(lambda: m.rows("cam-c") >= 1, timeout=60)
    assert m.flowing("cam-a")

    other = write_frames(tmp_path / "other-frames")
    changed_b = {"camera_id": "cam-b", "camera_uri": str(other)}
    m.patch({"cameras": [entry_a, changed_b, {"camera_id": "cam-c"}]})  # cam-b's source changed
    assert m.cis.pipelines["cam-b"] is b and b.grabber is not grabber_b  # its capture reopened
    assert b.settings.camera_uri == str(other)
    assert m.flowing("cam-a") and m.flowing("cam-b")

    m.patch({"cameras": [entry_a, {"camera_id": "cam-c"}]})  # removed
    assert "cam-b" not in m.cis.pipelines
    assert wait_for(lambda: "cam-b" not in read_statuses(m.paths.data / "status"))
    assert "cam-b" not in m.reported()["cameras"]
    assert m.flowing("cam-a") and m.flowing("cam-c")
    stopped = m.rows("cam-b")  # what cam-b left in the writer is written by now
    assert m.flowing("cam-a")
    assert m.rows("cam-b") == stopped

    # cam-a ran through it all: same pipeline, same capture, never reopened, no frame lost
    assert m.cis.pipelines["cam-a"] is a and a.grabber is grabber_a
    assert grabber_a.stats.reconnects == 0
    for lost in ("frames_without_model", "inference_errors", "dropped_outcomes"):
        assert a.metrics.counters[lost] == before.get(lost, 0), lost
    # a setting of the module reaches every camera that does not set its own, live
    m.patch({"prob_threshold": 0.95})
    assert wait_for(lambda: recent(m.db, 1, "cam-c")[0].prob_threshold == 0.95)
    assert m.cis.pipelines["cam-a"] is a and a.grabber is grabber_a


def test_a_bad_camera_entry_is_named_and_the_cameras_keep_running(module, frames_dir):
    cameras = [{"camera_id": "cam-a"}, {"camera_id": "cam-b"}]
    m = module(_twin(frames_dir, cameras))
    assert wait_for(lambda: set(m.cis.pipelines) == {"cam-a", "cam-b"})
    running = dict(m.cis.pipelines)

    bad = m.broker.patch_desired(
        MODULE, {"cameras": [*cameras, {"camera_id": "cam-a", "inference_fps": -1}]}
    )
    assert wait_for(lambda: (m.reported()["config"].get("error") or {}).get("version") == bad)
    error = m.reported()["config"]["error"]
    assert set(error["keys"]) == {"cameras"}
    assert "cameras[2].inference_fps" in error["keys"]["cameras"]
    assert m.cis.pipelines == running  # the last good settings keep serving

    duplicate = m.broker.patch_desired(MODULE, {"cameras": [*cameras, {"camera_id": "cam-a"}]})
    assert wait_for(lambda: (m.reported()["config"].get("error") or {}).get("version") == duplicate)
    reason = m.reported()["config"]["error"]["keys"]["cameras"]
    assert reason == "cameras[2].camera_id: cam-a is already the id of cameras[0]"
    assert m.cis.pipelines == running and m.flowing("cam-a")


def test_methods_name_their_camera_when_the_module_has_several(module, frames_dir):
    m = module(_twin(frames_dir, [{"camera_id": "cam-a"}, {"camera_id": "cam-b"}]))
    assert wait_for(lambda: set(m.cis.pipelines) == {"cam-a", "cam-b"})
    assert m.cis.pipelines["cam-a"].models.wait_ready(20)

    status, answer = m.hub.call_method("capture_now", {"timeout_s": 10})
    assert status == 400 and "camera_id is needed" in answer["error"]
    assert "cam-a, cam-b" in answer["error"]
    status, answer = m.hub.call_method("capture_now", {"camera_id": "cam-z", "timeout_s": 10})
    assert status == 404 and "cam-z" in answer["error"]
    status, answer = m.hub.call_method("capture_now", {"camera_id": "cam-b", "timeout_s": 10})
    assert status == 200 and {d["label"] for d in answer["detections"]} == {"scratch", "hole"}
    assert m.hub.call_method("capture_now", {"camera_id": "../x"})[0] == 400

    assert m.hub.call_method("set_reference", {})[0] == 400
    status, answer = m.hub.call_method("set_reference", {"camera_id": "cam-a", "timeout_s": 20})
    assert status == 200, answer
    assert (m.paths.data / "drift" / "cam-a" / "reference.json").is_file()
    assert not (m.paths.data / "drift" / "cam-b" / "reference.json").exists()

    assert m.hub.call_method("trigger", None)[0] == 400
    assert m.hub.call_method("trigger", {"camera_id": "cam-a"})[0] == 409  # a folder camera
    assert m.hub.call_method("reload_model", None) == (200, {"reloading": ["const/1"]})
    assert m.hub.call_method("reload_model", {"camera_id": "cam-b"}) == (
        200,
        {"reloading": "const/1"},
    )
    status = m.hub.call_method("status", None)[1]
    assert set(status["cameras"]) == {"cam-a", "cam-b"}
    assert status["cameras"]["cam-b"]["model"]["serving"] == "const/1"


def test_a_module_of_one_camera_takes_its_id_or_none(module, frames_dir):
    twin = _twin(frames_dir, [])
    del twin["cameras"]
    m = module({**twin, "camera_id": "solo"})
    assert m.cis.pipeline is not None and m.cis.pipeline.models.wait_ready(20)
    assert m.hub.call_method("capture_now", {"timeout_s": 10})[0] == 200
    assert m.hub.call_method("capture_now", {"camera_id": "solo", "timeout_s": 10})[0] == 200
    assert m.hub.call_method("capture_now", {"camera_id": "other"})[0] == 404
    assert m.hub.call_method("reload_model", None) == (200, {"reloading": "const/1"})
    # reported as before: the camera's whole status is the module's, no cameras section
    assert wait_for(lambda: "counters" in m.reported().get("status", {}))
    assert "cameras" not in m.reported()
    assert m.reported()["config"]["settings"]["cameras"] is None
    assert set(read_statuses(m.paths.data / "status")) == {"solo"}


def test_trigger_messages_go_to_the_camera_they_name(module, frames_dir):
    # nothing is stored but what a trigger asks for: every score is below 0.95, OK is not stored
    twin = _twin(
        frames_dir,
        [{"camera_id": "cam-a"}, {"camera_id": "cam-b"}],
        inference_fps=0.01,
        prob_threshold=0.95,
        store_all_inferences=False,
    )
    m = module(twin)
    assert wait_for(lambda: set(m.cis.pipelines) == {"cam-a", "cam-b"})
    assert m.cis.pipelines["cam-a"].models.wait_ready(20)
    for body in (
        {"trigger_id": "t-a", "camera_id": "cam-a"},
        {"trigger_id": "t-b", "camera_id": "cam-b"},
        {"trigger_id": "t-other", "camera_id": "cam-of-another-module"},
        {"trigger_id": "t-nobody"},  # which camera? none of several
        {"trigger_id": "t-a2", "camera_id": "cam-a"},
    ):
        m.hub.deliver(TRIGGER_INPUT, HubMessage.from_json(body))

    def triggered() -> dict[str, str]:
        return {b["trigger_id"]: b["camera_id"] for b in m.upstream() if "trigger_id" in b}

    assert wait_for(lambda: len(triggered()) >= 3, timeout=30)
    assert triggered() == {"t-a": "cam-a", "t-b": "cam-b", "t-a2": "cam-a"}
    stored = {r.unique_id: r.camera_id for r in recent(m.db, 100)}
    announced = {b["unique_id"]: b["camera_id"] for b in m.upstream()}
    assert announced == stored


def test_a_restart_replays_what_a_killed_writer_left_once_whatever_cameras_run(
    tmp_path, models_dir, frames_dir
):
    data = tmp_path / "data"
    data.mkdir()
    url = f"sqlite:///{data / 'cis.db'}"
    Database(url).create_schema()
    killed = subprocess.run(
        [sys.executable, "-m", "tests.cis.outcomes", str(data), url, "6", *CAMERAS_KILLED],
        cwd=REPO,
        timeout=300,
        capture_output=True,
        text=True,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    db = Database(url)
    left = {r.unique_id: r.camera_id for r in recent(db, 100)}
    assert Counter(left.values()) == {"cam-a": 2, "cam-b": 2, "cam-gone": 2}  # stored, unsent

    # the module restarts with two of the three cameras; the journal is the module's
    paths = Paths(assets=tmp_path, models=models_dir, data=data)
    route = f"FROM /messages/modules/{OWNER}/outputs/inference INTO $upstream"
    broker = InProcessBroker([parse_route("up", route)])
    twin = _twin(frames_dir, [{"camera_id": "cam-a"}, {"camera_id": "cam-b"}])
    cis = CisService(broker.hub(OWNER, twin), paths, Database(url), report_every_s=0.2)
    cis.start()
    try:

        def replayed() -> Counter[str]:
            bodies = [m.json() for _, output, m in list(broker.upstream) if output == "inference"]
            return Counter(b["unique_id"] for b in bodies if b["unique_id"] in left)

        assert wait_for(lambda: set(replayed()) == set(left))
        assert wait_for(lambda: recent(db, 1, "cam-a")[0].unique_id not in left, timeout=60)
    finally:
        cis.stop()
    assert replayed() == Counter(list(left))  # each once
    bodies = [m.json() for _, output, m in broker.upstream if output == "inference"]
    assert {b["unique_id"]: b["camera_id"] for b in bodies if b["unique_id"] in left} == left
    rows = recent(db, 1000)
    assert len({r.unique_id for r in rows}) == len(rows)  # none stored twice
    db.close()


def test_sigterm_stops_every_camera_stores_and_announces_what_they_left_within_10_s(
    tmp_path, models_dir, frames_dir
):
    cameras = [f"cam-{i}" for i in range(8)]
    desired = tmp_path / "desired.json"
    desired.write_text(json.dumps(_twin(frames_dir, [{"camera_id": c} for c in cameras])))
    data = tmp_path / "data"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("IOTEDGE_", "MFGVISION_")) and key != "EdgeHubConnectionString"
    }
    env.update(
        MFGVISION_DATA=str(data),
        MFGVISION_MODELS=str(models_dir),
        MFGVISION_ASSETS=str(tmp_path),
        MFGVISION_METRICS_PORT="0",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "mfgvision", "cis", "--desired", str(desired)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    db = Database(f"sqlite:///{data / 'mfgvision.db'}")
    try:

        def running() -> bool:
            statuses = read_statuses(data / "status")
            return set(statuses) == set(cameras) and all(
                s.state == "running" for s in statuses.values()
            )

        assert wait_for(running, timeout=120)
        assert wait_for(lambda: all(recent(db, 1, c) for c in cameras), timeout=60)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        stderr = proc.communicate()[1]
    stored = {r.unique_id: r.camera_id for r in recent(db, 100_000)}
    db.close()
    lines = (data / "cis-outputs.jsonl").read_text().splitlines()
    bodies = [json.loads(line)["body"] for line in lines]
    announced = {b["unique_id"]: b["camera_id"] for b in bodies if "object_detected" in b}
    assert announced == stored, stderr[-2000:]  # every row announced, every announcement stored
    assert set(stored.values()) == set(cameras)
    with sqlite3.connect(data / "cis-journal.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0] == 0
    conn.close()
