"""The drift thread of one CIS pipeline: looks at a sampled inferred frame every ``drift_every_s``,
raises and clears drift alerts, and keeps the camera's reference.

The inference thread only hands frames over (:meth:`DriftMonitor.observe`: a few list operations);
every image computation runs on the drift thread, on the latest frame handed over (an older one not
looked at yet is dropped). Alert messages go out on the ``alerts`` output with the pipeline's send
function; each is kept in the camera's state file until the hub has taken it, and sent again at the
next start when it was not. For the dashboard, a check is recorded (the view, a line of history and
the checked frame) at once when something changed, otherwise at most every ``VIEW_EVERY_S``.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from mfgvision.cis.delivery import Send
from mfgvision.cis.drift.alerts import RULES, Hysteresis, Rule, Verdict, judge, limits_json
from mfgvision.cis.drift.behaviour import BehaviourWindow, Counts
from mfgvision.cis.drift.geometry import ReferenceFeatures, camera_figures
from mfgvision.cis.drift.image import (
    Reference,
    analysis_image,
    checked_jpeg,
    grey,
    image_stats,
    quality_figures,
)
from mfgvision.cis.drift.messages import drift_message
from mfgvision.cis.messages import ALERTS_OUTPUT, iso_utc
from mfgvision.cis.metrics import PipelineMetrics
from mfgvision.cis.outcome import Outcome
from mfgvision.settings import CisSettings
from mfgvision.store.drift import DriftStore
from mfgvision.store.records import NG

log = logging.getLogger(__name__)

#: A check is recorded for the dashboard at most this often, unless the reference, the raised
#: alerts, the notes or the set of figures changed (then at once).
VIEW_EVERY_S = 30.0


@dataclass
class _Job:
    """A frame handed to the drift thread; the reference when someone waits for one."""

    image: np.ndarray
    frame_width: int
    frame_height: int
    settings: CisSettings
    waiting: list[Future[dict[str, Any]]] = field(default_factory=list)


@dataclass(frozen=True)
class _Checked:
    """What a check adds to the dashboard's record: when it ran (UTC), the frame it looked at
    (analysis size), the model's rates and the alert messages it made."""

    at: datetime
    image: np.ndarray
    model: dict[str, Any] | None
    messages: list[dict[str, Any]]


def behaviour_key(outcome: Outcome) -> tuple[str, str, str, float, str]:
    """What a model's answers and their verdicts depend on: camera, model, version, probability
    threshold and the camera's zones and rules (their digest)."""
    s = outcome.settings
    return (
        s.camera_id,
        outcome.model_name,
        outcome.model_version,
        s.prob_threshold,
        outcome.judgement.rulebook,
    )


class DriftMonitor:
    """Drift detection for one camera; see the module docstring."""

    def __init__(
        self, folder: Path, send: Send, settings: CisSettings, metrics: PipelineMetrics
    ) -> None:
        """``folder`` is ``<data>/drift``."""
        self.folder = folder
        self.metrics = metrics
        self.behaviour = BehaviourWindow(settings.drift_baseline, settings.drift_window)
        self._send = send
        self._settings = settings
        self._raised_since: float | None = None
        self._lock = threading.Lock()
        self._job: _Job | None = None
        self._requests: list[Future[dict[str, Any]]] = []
        self._next_check: float | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="drift", daemon=True)
        # Below: the drift thread's own (and start()'s, before the thread runs).
        self._camera: str | None = None
        self._store: DriftStore | None = None
        self._reference: Reference | None = None
        self._features: ReferenceFeatures | None = None
        self._alerts: dict[str, Hysteresis] = {}
        self._raised: dict[str, dict[str, Any]] = {}
        self._unsent: dict[str, dict[str, Any]] = {}
        self._refused: set[str] = set()
        self._baseline_saved = False
        self._state_error: str | None = None
        self._view_error: str | None = None
        self._view_written: tuple[float, Any] | None = None
        self._current: dict[str, Any] | None = None
        self._dirty = False
        self._checks = 0
        self._status: dict[str, Any] = {}

    # -- the pipeline's side ---------------------------------------------------------------------

    def start(self) -> None:
        """Load the camera's reference and state, send what an earlier run left unsent, start."""
        self._load(self._settings.camera_id)
        self._resend(list(self._unsent))
        self._thread.start()

    def stop(self) -> None:
        """Stop the drift thread and save the state."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)
        with self._lock:
            waiting = self._requests + (self._job.waiting if self._job else [])
            self._requests, self._job = [], None
        for future in waiting:
            if future.set_running_or_notify_cancel():
                future.set_exception(RuntimeError("the module is stopping"))
        self._save_state()

    def apply(self, settings: CisSettings) -> None:
        """New settings (another camera is looked at from its next frame on)."""
        old, self._settings = self._settings, settings
        self.behaviour.resize(settings.drift_baseline, settings.drift_window)
        if old.drift_every_s != settings.drift_every_s:
            with self._lock:
                self._next_check = None

    def observe(self, outcome: Outcome) -> None:
        """An inferred frame (inference thread): counted for the model's behaviour (its answers
        and its verdict), and handed to the drift thread when a check is due or a reference is
        wanted."""
        s = outcome.settings
        detections = outcome.result.detections
        self.behaviour.observe(
            behaviour_key(outcome),
            max((d.probability for d in detections), default=None),
            frozenset(d.label for d in detections),
            outcome.judgement.verdict == NG,
        )
        now = time.monotonic()
        with self._lock:
            due = s.drift_every_s > 0 and (self._next_check is None or now >= self._next_check)
            if not (due or self._requests):
                return
            if due:
                self._next_check = now + s.drift_every_s
            waiting = (self._job.waiting if self._job else []) + self._requests
            self._requests = []
            frame = outcome.frame
            self._job = _Job(outcome.image, frame.width, frame.height, s, waiting)
        self._wake.set()

    def set_reference(self, timeout: float) -> dict[str, Any]:
        """Make the next inferred frame the camera's reference; what was taken. TimeoutError when
        no frame is inferred within ``timeout`` seconds (the request is then dropped),
        RuntimeError when the reference cannot be saved."""
        future: Future[dict[str, Any]] = Future()
        with self._lock:
            self._requests.append(future)
        try:
            return future.result(timeout)
        except FutureTimeout:
            if future.cancel():
                raise TimeoutError("no frame was inferred in time") from None
        return future.result()  # the drift thread took it just now

    def raised_since(self) -> float | None:
        """Monotonic time of the latest alert raised while any is raised; None while none is, or
        while drift checks are off. The inference thread asks, to keep frames for retraining."""
        return self._raised_since if self._settings.drift_every_s > 0 else None

    def status(self) -> dict[str, Any]:
        """``status.drift``: the reference, the latest figures, the raised alerts."""
        return self._full(self._status)

    def _full(self, status: dict[str, Any]) -> dict[str, Any]:
        """``status`` with what the settings and the baseline say."""
        done, size = self.behaviour.progress()
        s = self._settings
        return {
            **status,
            "enabled": s.drift_every_s > 0,
            "every_s": s.drift_every_s,
            "baseline": {"inferences": done, "of": size},
        }

    # -- the drift thread ------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                job, self._job = self._job, None
            if job is None or self._stop.is_set():
                continue
            t0 = time.perf_counter()
            try:
                self._handle(job)
            except Exception:
                self.metrics.count("drift_errors")
                log.exception("drift check failed", extra={"camera_id": job.settings.camera_id})
                for future in job.waiting:
                    if not future.done():
                        future.set_exception(RuntimeError("the drift check failed"))
            self.metrics.time("drift_check", (time.perf_counter() - t0) * 1000)

    def _handle(self, job: _Job) -> None:
        if job.settings.camera_id != self._camera:
            self._load(job.settings.camera_id)
        waiting = [f for f in job.waiting if f.set_running_or_notify_cancel()]
        if waiting:
            self._take_reference(job, waiting)
        elif job.settings.drift_every_s > 0:
            self._check(job)

    def _load(self, camera_id: str) -> None:
        """Look at ``camera_id`` from now on: its reference, raised alerts, unsent messages and
        saved baseline."""
        if self._store is not None:
            self._store.view_path.unlink(missing_ok=True)
        self._camera = camera_id
        try:
            self._store = DriftStore(self.folder, camera_id)
        except ValueError as exc:
            self._store = None
            log.error("drift detection off", extra={"camera_id": camera_id, "error": str(exc)})
        self._use_reference(
            self._store.load_reference(Reference.from_saved) if self._store else None
        )
        state = self._store.load_state() if self._store else {}
        known = {rule.alert for rule in RULES}
        self._raised = {k: v for k, v in (state.get("alerts") or {}).items() if k in known}
        self._alerts = {rule.alert: Hysteresis(rule.alert in self._raised) for rule in RULES}
        self._raised_since = time.monotonic() if self._raised else None
        self._current = None
        self._unsent = {str(m["unique_id"]): m for m in state.get("unsent") or []}
        self._refused = set()
        self._baseline_saved = self._restore_baseline(state.get("baseline"))
        self._publish({}, [])

    def _restore_baseline(self, saved: Any) -> bool:
        """Take the saved baseline when it was made after the reference in force; True if taken."""
        ref = self._reference
        if not isinstance(saved, dict) or ref is None:
            return False
        if saved.get("reference_taken_at") != iso_utc(ref.taken_at):
            return False
        try:
            key = tuple(saved["key"])
            self.behaviour.restore(key, Counts.from_json(saved["counts"]))
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("saved drift baseline ignored", extra={"error": str(exc)})
            return False
        return True

    def _use_reference(self, reference: Reference | None) -> None:
        self._reference = reference
        self._features = ReferenceFeatures(grey(reference.image)) if reference else None

    def _take_reference(self, job: _Job, waiting: list[Future[dict[str, Any]]]) -> None:
        s = job.settings
        small = analysis_image(job.image)
        reference = Reference(
            small, image_stats(small), job.frame_width, job.frame_height, datetime.now(timezone.utc)
        )
        try:
            if self._store is None:
                raise ValueError(f"camera id {s.camera_id!r} cannot name a file")
            self._store.save_reference(reference.png(), reference.to_json())
        except (OSError, ValueError) as exc:
            log.error(
                "drift reference not saved", extra={"camera_id": s.camera_id, "error": str(exc)}
            )
            for future in waiting:
                future.set_exception(RuntimeError(f"reference not saved: {exc}"))
            return
        self._use_reference(reference)
        self.behaviour.reset()
        self._baseline_saved = False
        self._save_state()
        assert self._features is not None
        answer = {
            "camera_id": s.camera_id,
            **reference.to_json(),
            "features": self._features.count,
            "camera_check": self._features.usable,
        }
        log.info(
            "drift reference set",
            extra={
                "camera_id": s.camera_id,
                "taken_at": answer["taken_at"],
                "features": answer["features"],
            },
        )
        self._publish({}, self._feature_notes())
        for future in waiting:
            future.set_result(answer)

    def _comparable(self, job: _Job) -> str | None:
        """Why the frame cannot be compared with the reference; None when it can."""
        ref = self._reference
        if ref is None:
            return "no reference: call set_reference once the camera is set up"
        if (job.frame_width, job.frame_height) != (ref.frame_width, ref.frame_height):
            return (
                f"frames are {job.frame_width}x{job.frame_height}, the reference "
                f"{ref.frame_width}x{ref.frame_height}: set the reference again"
            )
        return None

    def _feature_notes(self) -> list[str]:
        features = self._features
        if features is None or features.usable:
            return []
        return [f"the reference has {features.count} features, too few for the camera check"]

    def _check(self, job: _Job) -> None:
        s = job.settings
        figures: dict[str, float | None] = {}
        details: dict[str, dict[str, Any]] = {}
        why = self._comparable(job)
        notes = [why] if why else self._feature_notes()
        small = analysis_image(job.image)
        if why is None and self._reference is not None and self._features is not None:
            figures.update(quality_figures(self._reference.stats, image_stats(small)))
            if self._features.usable:
                alignment = self._features.align(grey(small), job.frame_width)
                figures.update(camera_figures(alignment))
                details["camera"] = {"inliers": alignment.inliers if alignment else 0}
        reading = self.behaviour.reading()
        if reading is not None:
            figures.update(reading[0])
            details["model"] = reading[1]
        now = datetime.now(timezone.utc)
        self._checks += 1
        self.metrics.count("drift_checks")
        changes = [
            self._judge(rule, figures, details.get(rule.detector), s, now)
            for rule in RULES
            if all(limit.figure in figures for limit in rule.limits)
        ]
        messages = [m for m in changes if m is not None]
        with self._lock:
            dirty, self._dirty = self._dirty, False
        fresh_baseline = self.behaviour.baseline() is not None and not self._baseline_saved
        if messages or dirty or fresh_baseline:
            self._save_state()
        self._resend(sorted(self._refused))
        for body in messages:
            self._deliver(body)
        self._publish(figures, notes, _Checked(now, small, details.get("model"), messages))

    def _judge(
        self,
        rule: Rule,
        figures: dict[str, float | None],
        detail: dict[str, Any] | None,
        s: CisSettings,
        now: datetime,
    ) -> dict[str, Any] | None:
        """One alert's check at ``now``; its message when it was raised or cleared."""
        verdict = judge(rule, figures, s)
        change = self._alerts[rule.alert].update(verdict.past, verdict.clear, s.drift_consecutive)
        if change is None:
            return None
        if change == "raised":
            self._raised[rule.alert] = _raised(rule, verdict, now)
            self._raised_since = time.monotonic()
            raised_at = now
        else:
            raised_at = _parse_time(self._raised.pop(rule.alert, {}).get("raised_at")) or now
            if not self._raised:
                self._raised_since = None
        ref = self._reference
        body = drift_message(
            s, rule, change, verdict, figures, raised_at, now, ref.taken_at if ref else None, detail
        )
        with self._lock:
            self._unsent[body["unique_id"]] = body
        self.metrics.count(f"drift_alerts_{change}")
        extra = {
            "camera_id": s.camera_id,
            "alert": rule.alert,
            "figure": verdict.figure,
            "value": verdict.value,
            "threshold": verdict.threshold,
        }
        if change == "raised":
            log.warning("drift alert raised", extra=extra)
        else:
            log.info("drift alert cleared", extra=extra)
        return body

    def _deliver(self, body: dict[str, Any]) -> None:
        """Hand one alert message to the hub; it leaves the unsent list once the hub has it."""
        uid = body["unique_id"]

        def on_sent() -> None:
            with self._lock:
                self._dirty = self._unsent.pop(uid, None) is not None or self._dirty

        try:
            self._send(ALERTS_OUTPUT, body, on_sent)
        except Exception as exc:
            self._refused.add(uid)
            self.metrics.count("announce_errors")
            log.error(
                "drift alert not handed to the hub, sent again at the next check",
                extra={"alert": body["alert"], "error": f"{type(exc).__name__}: {exc}"[:300]},
            )
            return
        self._refused.discard(uid)

    def _resend(self, uids: list[str]) -> None:
        with self._lock:
            bodies = [self._unsent[u] for u in uids if u in self._unsent]
        if bodies:
            log.warning("drift alerts sent again", extra={"messages": len(bodies)})
        for body in bodies:
            self._deliver(body)

    def _save_state(self) -> None:
        """Write the raised alerts, unsent messages and the baseline; a failure is logged once."""
        if self._store is None:
            return
        ref, baseline = self._reference, self.behaviour.baseline()
        with self._lock:
            unsent = list(self._unsent.values())
        state: dict[str, Any] = {"alerts": self._raised, "unsent": unsent, "baseline": None}
        if ref is not None and baseline is not None and self.behaviour.key is not None:
            state["baseline"] = {
                "reference_taken_at": iso_utc(ref.taken_at),
                "key": list(self.behaviour.key),
                "counts": baseline.to_json(),
            }
        try:
            self._store.save_state(state)
        except (OSError, ValueError) as exc:
            if self._state_error is None:
                log.error("drift state not saved", extra={"error": str(exc)[:300]})
            self._state_error = str(exc)[:300]
            return
        self._state_error = None
        self._baseline_saved = state["baseline"] is not None

    def _publish(
        self, figures: dict[str, float | None], notes: list[str], checked: _Checked | None = None
    ) -> None:
        """The status after a check (``checked``) or a new reference, once the dashboard's record
        is written."""
        now = checked.at if checked else datetime.now(timezone.utc)
        ref = self._reference
        status = {
            "camera_id": self._camera,
            "reference": ref.to_json() if ref else None,
            "checked_at": iso_utc(now) if checked else None,
            "checks": self._checks,
            "figures": figures,
            "alerts": dict(self._raised),
            "notes": notes,
        }
        self._write_record(now, status, checked)
        self._status = status

    def _write_record(
        self, now: datetime, status: dict[str, Any], checked: _Checked | None
    ) -> None:
        """The dashboard's record of ``status``: at once when something changed, else at most
        every ``VIEW_EVERY_S``; a failure is logged once."""
        if self._store is None:
            return
        changes = (
            self._camera,
            status["reference"],
            sorted(self._raised),
            status["notes"],
            sorted(status["figures"]),
        )
        clock = time.monotonic()
        last = self._view_written
        if last is not None and last[1] == changes and clock - last[0] < VIEW_EVERY_S:
            return
        try:
            self._record(now, status, checked)
        except (OSError, ValueError) as exc:
            if self._view_error is None:
                log.warning("drift view not written", extra={"error": str(exc)[:300]})
            self._view_error = str(exc)[:300]
            return
        self._view_error = None
        self._view_written = (clock, changes)

    def _record(self, now: datetime, status: dict[str, Any], checked: _Checked | None) -> None:
        """Write the dashboard's view and, after a check, its frame and a line of history."""
        assert self._store is not None
        if checked is not None:
            self._current = {
                "image": self._store.save_current(checked_jpeg(checked.image), now),
                "checked_at": iso_utc(now),
            }
        self._store.write_view(
            {
                **self._full(status),
                "limits": limits_json(self._settings),
                "current": self._current,
                "updated": iso_utc(now),
            }
        )
        if checked is None or self._current is None:
            return
        self._store.drop_current(keep=self._current["image"])
        self._store.history.append(
            {
                "at": iso_utc(now),
                "figures": status["figures"],
                "model": checked.model,
                "raised": sorted(self._raised),
                "changes": [
                    {k: body[k] for k in ("alert", "state", "figure", "value", "threshold")}
                    for body in checked.messages
                ],
            }
        )


def _raised(rule: Rule, verdict: Verdict, now: datetime) -> dict[str, Any]:
    return {
        "raised_at": iso_utc(now),
        "detector": rule.detector,
        "figure": verdict.figure,
        "value": verdict.value,
        "threshold": verdict.threshold,
    }


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
