"""No desired patch and no method payload can stop a module or leak a secret.

Each module type runs once per test, over the in-process hub; hypothesis then feeds it a thousand
generated desired patches (bad types, huge and non-finite numbers, control characters, legacy keys,
secrets by key and by shape, at any depth) and method payloads. After every patch the test undoes it
with a valid patch and checks that the module applied that one, that no handler raised, and that the
secret never shows in reported properties, method answers, status files or log lines.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mfgvision.cis.service import CisService
from mfgvision.edge.hub import HubMessage
from mfgvision.edge.inprocess import InProcessBroker, InProcessHub
from mfgvision.file_cleanup.service import FileCleanupService
from mfgvision.image_upload.service import ImageUploadService
from mfgvision.line_bridge.service import LineBridgeService
from mfgvision.logs import JsonFormatter
from mfgvision.model_repo.service import ModelRepoService
from mfgvision.runtime import Paths
from mfgvision.settings import (
    CisSettings,
    FileCleanupSettings,
    ImageUploadSettings,
    LineBridgeSettings,
    ModelRepoSettings,
    ModuleSettings,
)
from mfgvision.store.database import Database
from tests.cis.conftest import write_const_model, write_frames

EXAMPLES = 1000
SECRET = "hunter2XYZ"
BARRIER_INPUT = "fuzzBarrier"
STATUSES = {200, 400, 404, 409, 503, 504}

SECRET_TEXTS = st.sampled_from(
    [
        f"rtsp://admin:{SECRET}@127.0.0.1:9/s",
        f"rtsp://admin:p@{SECRET}@127.0.0.1:9/s",
        f"http://127.0.0.1:9/snap?user=a&pwd={SECRET}",
        f"http://127.0.0.1:9/snap?password={SECRET}",
        f"Server=db;Database=x;Password={SECRET};",
        f"DefaultEndpointsProtocol=https;AccountName=a;AccountKey={SECRET}==",
        f"HostName=h;DeviceId=d;SharedAccessKey={SECRET}=",
        f"Bearer {SECRET}.abc.def",
    ]
)
SECRET_KEYS = ["password", "db_pwd", "SharedAccessKey", "AccountKey", "api_key", "token"]
ODD_TEXTS = [
    "",
    "true",
    "false",
    "inf",
    "-inf",
    "nan",
    "-1",
    "1e308",
    "..",
    "../../etc",
    "/etc",
    "samples/line1",
    "frames",
    "rtsp://127.0.0.1:9/s",
    "Read from file",
    "Basler GVSP",
    "CPUExecutionProvider",
    "NoSuchExecutionProvider",
    "viky.cti",
    "/tmp/evil.cti",
    "line1",
    ".hidden",
    "a\x00b",
    "a\nb",
    "\u202egnp.exe",
    "x" * 2000,
    "${RTSP_PASSWORD}",
]
NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.sampled_from([0, -1, 1, 0.5, 60, 1e308, -1e308, 2**63, 2**64, float("nan")]),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    NUMBERS,
    st.text(max_size=20),
    st.sampled_from(ODD_TEXTS),
    SECRET_TEXTS,
)


def keys_of(model: type[ModuleSettings]) -> st.SearchStrategy[str]:
    """Keys of the module's settings, legacy keys, secret keys and arbitrary texts."""
    from mfgvision.settings import _LEGACY_CAMERA_FLAGS, _LEGACY_KEYS

    known = [*model.model_fields, *_LEGACY_KEYS, *_LEGACY_CAMERA_FLAGS]
    known += ["CAMERA_TYPE", "RETRAIN_INTERVAL", *SECRET_KEYS]
    return st.one_of(st.sampled_from(known), st.text(min_size=1, max_size=12))


def values(keys: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    return st.recursive(
        SCALARS,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(st.one_of(keys, st.sampled_from(SECRET_KEYS)), inner, max_size=4),
        ),
        max_leaves=10,
    )


def patches(model: type[ModuleSettings]) -> st.SearchStrategy[dict[str, Any]]:
    keys = keys_of(model).filter(lambda key: not key.startswith("$"))
    return st.dictionaries(keys, values(keys), min_size=1, max_size=5)


PAYLOADS = st.one_of(
    st.none(),
    SCALARS,
    st.fixed_dictionaries({"timeout_s": NUMBERS}),
    st.fixed_dictionaries({"timeout_s": st.floats(min_value=0.1, max_value=2)}),
    st.dictionaries(st.text(max_size=8), SCALARS, max_size=3),
)


@dataclass
class Module:
    """A started module service, its hub and where it writes status files."""

    hub: InProcessHub
    broker: InProcessBroker
    base: dict[str, Any]
    methods: list[str]
    status_dir: Path | None = None


class Collected(logging.Handler):
    """Every log line as the module writes it, and the records of escaped exceptions."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(JsonFormatter("fuzz"))
        self.text = io.StringIO()
        self.escaped: list[str] = []

    def clear(self) -> None:
        self.text = io.StringIO()
        self.escaped.clear()

    def emit(self, record: logging.LogRecord) -> None:
        self.text.write(self.format(record) + "\n")
        if record.getMessage() in ("handler failed", "direct method failed"):
            self.escaped.append(self.format(record))


@pytest.fixture
def collected() -> Iterator[Collected]:
    root = logging.getLogger()
    handler, level = Collected(), root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


def barrier(hub: InProcessHub) -> None:
    """Wait until the module's hub thread has handled everything queued before."""
    done = threading.Event()
    hub.on_input(BARRIER_INPUT, lambda _message: done.set())
    hub.deliver(BARRIER_INPUT, HubMessage(b"{}"))
    assert done.wait(30), "the module's hub thread is stuck"


def undo(patch: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """The patch that puts every key of ``patch`` back as ``base`` has it (null deletes)."""
    return {key: base.get(key) for key in patch}


def no_secret(where: str, text: str) -> None:
    assert SECRET not in text, f"secret in {where}: {text[:2000]}"


def fuzz(
    module: Module,
    model: type[ModuleSettings],
    valid: Callable[[int], dict[str, Any]],
    collected: Collected,
) -> None:
    """Feed patches and method payloads; after each, a valid patch must be applied."""
    counter = iter(range(10**9))

    @settings(max_examples=EXAMPLES, deadline=None)
    @given(patch=patches(model), method=st.sampled_from(module.methods), payload=PAYLOADS)
    def one(patch: dict[str, Any], method: str, payload: Any) -> None:
        collected.clear()
        module.broker.patch_desired(module.hub.module_id, patch)
        good = valid(next(counter))
        version = module.broker.patch_desired(
            module.hub.module_id, {**undo(patch, module.base), **good}
        )
        barrier(module.hub)
        status, answer = module.hub.call_method(method, payload)
        assert status in STATUSES, (status, answer)
        no_secret("a method answer", json.dumps(answer, default=str))
        reported = module.hub.get_twin()["reported"]
        no_secret("reported properties", json.dumps(reported, default=str))
        config = reported["config"]
        assert config.get("error") is None and config["applied_version"] == version, config
        assert {k: config["settings"][k] for k in good} == good
        if module.status_dir is not None:
            for path in module.status_dir.glob("*.json"):
                no_secret(f"status file {path.name}", path.read_text())
        no_secret("the log", collected.text.getvalue())
        assert not collected.escaped, collected.escaped[0]

    one()


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    paths = Paths(assets=tmp_path, models=tmp_path / "models", data=tmp_path / "data")
    paths.images.mkdir(parents=True)
    return paths


def test_cis_takes_any_patch_and_payload(paths, tmp_path, collected):
    write_const_model(paths.models)
    frames = write_frames(tmp_path / "frames")
    base = {
        "camera_type": "folder",
        "camera_uri": str(frames),
        "camera_id": "cam-1",
        "camera_fps": 20,
        "inference_fps": 0,
        "model_name": "const",
        "model_version": "1",
        "store_raw_frames": False,
        "store_all_inferences": False,
        "retrain_interval_s": 0,
    }
    broker = InProcessBroker([])
    db = Database(f"sqlite:///{paths.default_db_path}")
    service = CisService(broker.hub("cam", base), paths, db, report_every_s=3600)
    service.start()
    try:
        module = Module(
            broker.hub("cam"),
            broker,
            base,
            ["status", "capture_now", "trigger", "reload_model", "set_reference", "nope"],
            paths.data / "status",
        )
        fuzz(module, CisSettings, lambda i: {"prob_threshold": (i % 100) / 100}, collected)
    finally:
        service.stop()


def test_image_upload_takes_any_patch_and_payload(paths, collected, monkeypatch):
    monkeypatch.delenv("MFGVISION_STORAGE_CONNECTION_STRING", raising=False)
    broker = InProcessBroker([])
    service = ImageUploadService(broker.hub("upload"), paths.images, blobs_dir=paths.blobs)
    service.start()
    try:
        module = Module(broker.hub("upload"), broker, {}, ["status", "retry_failed", "nope"])
        fuzz(module, ImageUploadSettings, lambda i: {"max_attempts": 1 + i % 50}, collected)
    finally:
        service.stop()


def test_file_cleanup_takes_any_patch_and_payload(paths, collected):
    db = Database(f"sqlite:///{paths.default_db_path}")
    db.create_schema()
    broker = InProcessBroker([])
    base = {"interval_s": 3600}
    service = FileCleanupService(broker.hub("cleanup", base), paths, db)
    service.start()
    try:
        module = Module(broker.hub("cleanup"), broker, base, ["status", "run_now", "nope"])
        fuzz(module, FileCleanupSettings, lambda i: {"min_age_s": float(i % 500)}, collected)
    finally:
        service.stop()
        db.close()


def test_model_repo_takes_any_patch_and_payload(paths, tmp_path, collected):
    broker = InProcessBroker([])
    base = {"interval_s": 3600}
    service = ModelRepoService(broker.hub("repo", base), paths, shipped=tmp_path / "shipped")
    service.start()
    try:
        module = Module(broker.hub("repo"), broker, base, ["status", "run_now", "nope"])
        fuzz(module, ModelRepoSettings, lambda i: {"golden_tolerance": (i % 100) / 100}, collected)
    finally:
        service.stop()


def test_line_bridge_takes_any_patch_and_payload(paths, collected):
    broker = InProcessBroker([])
    service = LineBridgeService(broker.hub("bridge"), paths)
    service.start()
    try:
        module = Module(broker.hub("bridge"), broker, {}, ["status", "nope"])
        fuzz(module, LineBridgeSettings, lambda i: {"trigger_timeout_s": 0.5 + i % 50}, collected)
    finally:
        service.stop()
