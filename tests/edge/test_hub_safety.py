"""The hub's method dispatcher and reports: nothing a handler does escapes, no secret goes out."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from mfgvision.edge.hub import MethodArguments
from mfgvision.edge.inprocess import InProcessBroker
from mfgvision.store.status import write_status


class Arguments(MethodArguments):
    timeout_s: float = Field(1.0, gt=0, le=60)


def fails_with_a_secret(_payload: Any) -> None:
    raise RuntimeError("cannot connect: pwd=hunter2")


def test_answers_by_kind_of_failure_and_masks_secrets():
    hub = InProcessBroker([]).hub("m")
    hub.on_method("typed", lambda arguments: arguments.model_dump(), Arguments)
    hub.on_method("leaky", lambda _p: {"uri": "rtsp://admin:hunter2@cam/s", "token": "hunter2"})
    hub.on_method("broken", lambda _p: 1 / 0)
    hub.on_method("secret_error", fails_with_a_secret)

    assert hub.call_method("typed", {"timeout_s": 2}) == (200, {"timeout_s": 2.0})
    status, answer = hub.call_method("typed", {"timeout_s": 1e308})
    assert status == 400 and answer["error"] == (
        "bad payload: timeout_s: Input should be less than or equal to 60"
    )
    assert hub.call_method("typed", {"timeout_s": float("nan")})[0] == 400
    assert hub.call_method("typed", {"other": 1})[0] == 400
    assert hub.call_method("typed", [1])[0] == 400
    assert hub.call_method("leaky", {"anything": 1})[0] == 400  # takes no arguments
    assert hub.call_method("nope", None)[0] == 404
    assert hub.call_method("broken", None)[0] == 500
    status, answer = hub.call_method("secret_error", None)
    assert status == 500 and "hunter2" not in str(answer)
    assert hub.call_method("leaky", None) == (200, {"uri": "rtsp://***@cam/s", "token": "***"})


def test_reports_and_status_files_are_masked(tmp_path):
    hub = InProcessBroker([]).hub("m")
    status: dict[str, Any] = {
        "status": {"last_error": "cannot open http://cam/x?password=hunter2"},
        "config": {"settings": {"camera_features": {"DevicePassword": "hunter2"}}},
    }
    reported = hub.report(lambda: status)
    assert reported is not None and "hunter2" not in str(reported)
    assert "hunter2" not in str(hub.get_twin()["reported"])
    assert write_status(tmp_path, "cam1", "m", status)
    assert "hunter2" not in (tmp_path / "cam1.json").read_text()
