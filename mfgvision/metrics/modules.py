"""Metrics read from what the modules already count: each reader turns one module's ``status()``
(its reported properties, docs/twin-config.md) into samples at scrape time.

Counters a module keeps in a dictionary become one family with an ``event`` label, so a counter
added to a module shows up without a change here. The names are listed in docs/metrics.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

Kind = Literal["counter", "gauge"]


@dataclass
class _Family:
    kind: Kind
    doc: str
    labels: tuple[str, ...]
    samples: list[tuple[tuple[str, ...], float]] = field(default_factory=list)


class Families:
    """Samples gathered for one scrape; a name sampled by several modules is one family."""

    def __init__(self, **labels: str) -> None:
        """``labels`` (e.g. ``module``) go on every sample."""
        self._base = labels
        self._families: dict[str, _Family] = {}

    def counter(self, name: str, doc: str, value: float, **labels: str) -> None:
        """A counter sample; ``name`` without its ``_total`` suffix."""
        self._add("counter", name, doc, value, labels)

    def gauge(self, name: str, doc: str, value: float, **labels: str) -> None:
        self._add("gauge", name, doc, value, labels)

    def _add(self, kind: Kind, name: str, doc: str, value: float, labels: dict[str, str]) -> None:
        merged = {**self._base, **labels}
        family = self._families.setdefault(name, _Family(kind, doc, tuple(merged)))
        if family.kind != kind or family.labels != tuple(merged):
            raise ValueError(f"{name} sampled as {kind} with labels {sorted(merged)}")
        family.samples.append((tuple(merged.values()), float(value)))

    def merge(self, other: Families) -> None:
        """Take every sample of ``other``, or none (ValueError) when a family does not fit."""
        for name, family in other._families.items():
            mine = self._families.get(name)
            if mine is not None and (mine.kind, mine.labels) != (family.kind, family.labels):
                raise ValueError(f"{name} sampled as {family.kind} with labels {family.labels}")
        for name, family in other._families.items():
            mine = self._families.setdefault(name, _Family(family.kind, family.doc, family.labels))
            mine.samples.extend(family.samples)

    def metrics(self) -> list[Metric]:
        out: list[Metric] = []
        for name, family in self._families.items():
            metric_type = CounterMetricFamily if family.kind == "counter" else GaugeMetricFamily
            metric = metric_type(name, family.doc, labels=family.labels)
            for values, value in family.samples:
                metric.add_metric(values, value)
            out.append(metric)
        return out


#: Turns one module's ``status()`` into samples.
StatusReader = Callable[[Mapping[str, Any], Families], None]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _events(
    out: Families,
    name: str,
    doc: str,
    counts: Mapping[str, Any],
    skip: Iterable[str] = (),
    **labels: str,
) -> None:
    """Every number of ``counts`` (but those in ``skip``) as ``name{event=<key>}``."""
    skipped = set(skip)
    for event, value in counts.items():
        if event not in skipped and _number(value):
            out.counter(name, doc, value, event=event, **labels)


def read_cis(status: Mapping[str, Any], out: Families) -> None:
    """CIS: inferences, pipeline events, camera, rows and announcements waiting. A module running
    several cameras gives each camera's under its id, and what its cameras share (rows and
    announcements waiting, the module's own events) under an empty ``camera_id``."""
    cameras = status.get("cameras")
    if isinstance(cameras, Mapping):
        for camera_id, camera in cameras.items():
            _read_camera(camera, {"camera_id": str(camera_id)}, out)
        module = {"camera_id": ""}
        _events(out, *_CIS_EVENTS, status["status"]["counters"], **module)
        _read_waiting(status["status"], module, out)
        return
    s = status["status"]
    if "counters" not in s:  # no valid settings yet: no pipeline
        return
    camera = {"camera_id": str(status["config"]["settings"]["camera_id"])}
    _read_camera(s, camera, out)
    _read_waiting(s, camera, out)


_CIS_EVENTS = (
    "mfgvision_cis_events",
    "CIS pipeline events (rows written, outcomes dropped, errors...), by event",
)


def _read_camera(s: Mapping[str, Any], camera: dict[str, str], out: Families) -> None:
    """One camera's inferences, events, frames and model."""
    counters = s["counters"]
    out.counter(
        "mfgvision_inferences", "Frames the model ran on", counters.get("inferences", 0), **camera
    )
    _events(out, *_CIS_EVENTS, counters, skip=("inferences",), **camera)
    cam = s["camera"]
    out.counter("mfgvision_camera_frames", "Frames the camera delivered", cam["frames"], **camera)
    out.counter(
        "mfgvision_camera_frames_dropped",
        "Frames replaced by a newer one before inference took them",
        cam["dropped"],
        **camera,
    )
    out.counter(
        "mfgvision_camera_reconnects",
        "Times the camera was opened again",
        cam["reconnects"],
        **camera,
    )
    out.gauge("mfgvision_camera_state", "The camera's state (1)", 1, state=cam["state"], **camera)
    serving = s["model"]["serving"]
    if serving:
        out.gauge("mfgvision_cis_model_info", "The model serving (1)", 1, model=serving, **camera)


def _read_waiting(s: Mapping[str, Any], labels: dict[str, str], out: Families) -> None:
    """Rows and announcements waiting in the module's writer."""
    out.gauge(
        "mfgvision_cis_pending_rows",
        "Rows not yet in the database (spooled on disk or held in memory)",
        s["pending_rows"],
        **labels,
    )
    waiting = s["unconfirmed"]
    out.gauge(
        "mfgvision_cis_unconfirmed_announcements",
        "Inferences whose messages are not all confirmed yet (journal entries)",
        waiting["announcements"],
        **labels,
    )
    out.gauge(
        "mfgvision_cis_awaiting_receipts",
        "Upload requests waiting for ImageUpload's receipt",
        waiting["receipts"],
        **labels,
    )
    out.gauge(
        "mfgvision_cis_resent_awaiting_receipts",
        "Upload requests sent more than once and still without a receipt",
        waiting["resent"],
        **labels,
    )


def read_image_upload(status: Mapping[str, Any], out: Families) -> None:
    """ImageUpload: uploads, rejections and the outbox waiting."""
    s = status["status"]
    _events(
        out,
        "mfgvision_image_upload_events",
        "ImageUpload events (uploaded, skipped, rejected, failed, errors...), by event",
        s,
        skip=("queued", "oldest_waiting_s"),
    )
    out.gauge("mfgvision_image_upload_queued", "Images waiting in the outbox", s["queued"])
    oldest = s["oldest_waiting_s"]
    out.gauge(
        "mfgvision_image_upload_oldest_waiting_seconds",
        "Age of the oldest image waiting in the outbox (0 when none waits)",
        oldest or 0,
    )


#: Numbers in a LineBridge sink's status that are levels, not counts.
SINK_GAUGES = {"queued": "items waiting to be sent", "in_flight": "items sent, not acknowledged"}


def read_line_bridge(status: Mapping[str, Any], out: Families) -> None:
    """LineBridge: results, parts, cameras and every connection to the line."""
    s = status["status"]
    _events(
        out,
        "mfgvision_line_bridge_events",
        "LineBridge events (inspections, triggers, fail_safe, late...), by event",
        s,
        skip=("waiting_parts",),
    )
    out.gauge(
        "mfgvision_line_bridge_waiting_parts",
        "Triggered parts waiting for a verdict",
        s["waiting_parts"],
    )
    for camera_id, camera in s["cameras"].items():
        out.counter(
            "mfgvision_line_bridge_inspections",
            "Inspections passed to the line, per camera",
            camera["inspections"],
            camera_id=camera_id,
        )
        out.counter(
            "mfgvision_line_bridge_ng",
            "NG inspections passed to the line, per camera",
            camera["ng_count"],
            camera_id=camera_id,
        )
    for sink, state in s["sinks"].items():
        out.gauge(
            "mfgvision_line_bridge_sink_connected",
            "1 while the connection to the line is up",
            int(bool(state.get("connected"))),
            sink=sink,
        )
        for key, what in SINK_GAUGES.items():
            if _number(state.get(key)):
                out.gauge(
                    f"mfgvision_line_bridge_sink_{key}", f"Sink: {what}", state[key], sink=sink
                )
        for event, value in state.items():
            if event not in SINK_GAUGES and _number(value):
                out.counter(
                    "mfgvision_line_bridge_sink_events",
                    "Sink events (sent, acknowledged, dropped, reconnects...), by event",
                    value,
                    sink=sink,
                    event=event,
                )


def read_file_transfer(status: Mapping[str, Any], out: Families) -> None:
    """file-upload / file-download: runs and what the last one moved."""
    s = status["status"]
    transfer = {"transfer": str(s["transfer"])}
    out.counter("mfgvision_file_transfer_runs", "Transfer runs", s["runs"], **transfer)
    last = s["last_run"]
    if last is None:
        return
    for result in ("transferred", "skipped", "failed"):
        out.gauge(
            "mfgvision_file_transfer_last_run_files",
            "Files of the last run, by result",
            last[result],
            result=result,
            **transfer,
        )
    out.gauge(
        "mfgvision_file_transfer_last_run_bytes",
        "Bytes the last run moved",
        last["bytes"],
        **transfer,
    )


def read_file_cleanup(status: Mapping[str, Any], out: Families) -> None:
    """FileCleanup: passes, what they freed, the disk after the last one."""
    s = status["status"]
    out.counter("mfgvision_file_cleanup_passes", "Cleanup passes", s["passes"])
    for key, value in s["totals"].items():
        out.counter(f"mfgvision_file_cleanup_{key}", f"Cleanup total: {key}", value)
    last = s["last_pass"]
    if last is not None and last["disk_used_pct_after"] is not None:
        out.gauge(
            "mfgvision_file_cleanup_disk_used_ratio",
            "Used share of the data disk after the last pass",
            last["disk_used_pct_after"] / 100,
        )


def read_model_repo(status: Mapping[str, Any], out: Families) -> None:
    """ModelRepo: passes and the models it holds."""
    s = status["status"]
    out.counter("mfgvision_model_repo_passes", "Model repository passes", s["passes"])
    out.gauge(
        "mfgvision_model_repo_models", "Model versions in the repository", len(status["models"])
    )
    out.gauge("mfgvision_model_repo_invalid_models", "Model versions not valid", len(s["invalid"]))
