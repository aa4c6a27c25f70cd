"""Windowed statistics (OK/NG, yield, defects per class, inference time) from a minute rollup.

Aggregating a day of inferences on every poll would cost one table scan per request. Instead the
dashboard keeps per-minute aggregates of the last ``horizon`` in memory: settled minutes (older than
``settle_s``) come from the rollup, the newest minutes and the partial minute at a window's edge are
queried live (a few hundred rows at most). New settled minutes are added as time moves on, and the
whole rollup is rebuilt in the background every ``rebuild_s`` so that rows stored late (for
example replayed after a database outage) are counted within minutes. Windows reaching back beyond
the horizon are aggregated directly in the database.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Engine

from mfgvision.store.queries import CameraBucket, camera_buckets, label_buckets

log = logging.getLogger(__name__)

MINUTE = 60
HORIZON_S = 26 * 3600
SETTLE_S = 120
REBUILD_S = 300
MAX_WINDOW = timedelta(days=31)
LATENCY_POINTS = 120
WINDOWS: dict[str, timedelta] = {
    "hour": timedelta(hours=1),
    "shift": timedelta(hours=8),
    "day": timedelta(hours=24),
}
WINDOW_LABELS = {
    "hour": "Last hour",
    "shift": "Shift (8 h)",
    "day": "Day (24 h)",
    "custom": "Custom",
}


class WindowError(ValueError):
    """A window request that cannot be served; the message says why."""


@dataclass(frozen=True)
class Window:
    """A half-open time range ``[start, end)`` in UTC and the name it was asked for by."""

    name: str
    start: datetime
    end: datetime

    @property
    def span_s(self) -> float:
        return (self.end - self.start).total_seconds()

    @property
    def defect_bucket_s(self) -> int:
        """Hourly bars from six hours on, five-minute bars for shorter windows."""
        return 3600 if self.span_s >= 6 * 3600 else 300

    @property
    def latency_bucket_s(self) -> int:
        """About ``LATENCY_POINTS`` points over the window, in whole minutes."""
        return max(MINUTE, math.ceil(self.span_s / LATENCY_POINTS / MINUTE) * MINUTE)


def parse_time(value: str, name: str) -> datetime:
    """An ISO 8601 time with a zone (``Z`` or an offset); raises WindowError otherwise."""
    if len(value) > 40:
        raise WindowError(f"'{name}' is too long")
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise WindowError(f"'{name}' is not an ISO 8601 time: {value[:40]!r}") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise WindowError(f"'{name}' needs a time zone (e.g. 2024-05-01T06:00:00Z)")
    if not 2000 <= parsed.year <= 2200:
        raise WindowError(f"'{name}' is out of range")
    return parsed.astimezone(timezone.utc)


def parse_window(name: str | None, start: str | None, end: str | None, now: datetime) -> Window:
    """``hour`` (default), ``shift``, ``day`` ending now, or ``custom`` with ``from`` and ``to``."""
    name = name or ("custom" if start or end else "hour")
    if name in WINDOWS:
        if start or end:
            raise WindowError("'from' and 'to' go with window=custom only")
        return Window(name, now - WINDOWS[name], now)
    if name != "custom":
        raise WindowError(f"window must be one of {[*WINDOWS, 'custom']}")
    if not start:
        raise WindowError("window=custom needs 'from'")
    begin = parse_time(start, "from")
    finish = parse_time(end, "to") if end else now
    if finish <= begin:
        raise WindowError("'to' must be after 'from'")
    if finish - begin > MAX_WINDOW:
        raise WindowError(f"a window spans at most {MAX_WINDOW.days} days")
    return Window("custom", begin, finish)


@dataclass
class _Acc:
    total: int = 0
    ng: int = 0
    sum_ms: float = 0.0
    max_ms: float = 0.0

    def add(self, total: int, ng: int, sum_ms: float, max_ms: float) -> None:
        self.total += total
        self.ng += ng
        self.sum_ms += sum_ms
        self.max_ms = max(self.max_ms, max_ms)


@dataclass
class _Snapshot:
    """Per-minute aggregates of the minutes ``[lo, hi)`` (indexes since 1970)."""

    lo: int
    hi: int
    built_at: float
    cameras: dict[str, dict[int, CameraBucket]] = field(default_factory=dict)
    labels: dict[str, dict[int, dict[str, int]]] = field(default_factory=dict)

    def add(
        self, cams: Iterable[CameraBucket], labels: Iterable[tuple[str, int, str, int]]
    ) -> None:
        for c in cams:
            self.cameras.setdefault(c.camera_id, {})[c.bucket] = c
        for cam, minute, label, n in labels:
            per = self.labels.setdefault(cam, {}).setdefault(minute, {})
            per[label] = per.get(label, 0) + n


@dataclass
class WindowStats:
    """Everything the stats endpoint reports for one window."""

    window: Window
    counts: dict[str, tuple[int, int]]  # camera -> (total, ng)
    defects: dict[int, dict[str, int]]  # bucket start (epoch s) -> label -> detections
    latency: dict[str, dict[int, _Acc]]  # camera -> bucket start (epoch s) -> aggregate
    source: str


def _minute(when: datetime) -> int:
    return int(when.timestamp() // MINUTE)


def _at(minute: int) -> datetime:
    return datetime.fromtimestamp(minute * MINUTE, tz=timezone.utc)


class Rollup:
    """The per-minute rollup of one database; thread-safe, shared by all requests of an app."""

    def __init__(
        self,
        engine: Engine,
        horizon_s: int = HORIZON_S,
        settle_s: int = SETTLE_S,
        rebuild_s: int = REBUILD_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.horizon_s = horizon_s
        self.settle_s = settle_s
        self.rebuild_s = rebuild_s
        self.clock = clock
        self._snapshot: _Snapshot | None = None
        self._lock = threading.Lock()
        self._build_lock = threading.Lock()
        self._rebuilding = False

    def warm_up(self) -> None:
        """Build the rollup on a background thread (a dashboard start calls this)."""
        threading.Thread(target=self._rebuild_quietly, name="rollup-warmup", daemon=True).start()

    def stats(
        self, window: Window, camera_id: str | None = None, labels: bool = True
    ) -> WindowStats:
        """Counts per camera, defects per class and bucket, inference time per camera and bucket.

        ``labels=False`` leaves the defects out (empty), for callers that only need the counts.
        """
        defect_s, latency_s = window.defect_bucket_s, window.latency_bucket_s
        counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        defects: dict[int, dict[str, int]] = defaultdict(dict)
        latency: dict[str, dict[int, _Acc]] = defaultdict(dict)

        def add_cams(rows: Iterable[CameraBucket], bucket_s: int) -> None:
            for c in rows:
                if camera_id is not None and c.camera_id != camera_id:
                    continue
                counts[c.camera_id][0] += c.total
                counts[c.camera_id][1] += c.ng
                start = c.bucket * bucket_s
                key = start - start % latency_s
                latency[c.camera_id].setdefault(key, _Acc()).add(c.total, c.ng, c.sum_ms, c.max_ms)

        def add_labels(rows: Iterable[tuple[str, int, str, int]], bucket_s: int) -> None:
            for cam, bucket, label, n in rows:
                if camera_id is not None and cam != camera_id:
                    continue
                start = bucket * bucket_s
                per = defects[start - start % defect_s]
                per[label] = per.get(label, 0) + n

        def add_from_database(begin: datetime, finish: datetime, bucket_s: int) -> None:
            add_cams(camera_buckets(self.engine, begin, finish, bucket_s), bucket_s)
            if labels:
                add_labels(label_buckets(self.engine, begin, finish, bucket_s), bucket_s)

        snap = self._current()
        first_full = _minute(window.start) + (1 if window.start.timestamp() % MINUTE else 0)
        if snap is None or first_full < snap.lo:
            # Beyond the horizon: aggregate in the database at the coarser of the two bucket sizes.
            add_from_database(window.start, window.end, math.gcd(defect_s, latency_s))
            source = "database"
        else:
            mid_lo = first_full
            mid_hi = max(mid_lo, min(snap.hi, _minute(window.end)))
            live = [(window.start, min(_at(mid_lo), window.end)), (_at(mid_hi), window.end)]
            for begin, finish in live:
                if begin < finish:
                    add_from_database(begin, finish, MINUTE)
            for minutes in snap.cameras.values():
                add_cams((c for m, c in minutes.items() if mid_lo <= m < mid_hi), MINUTE)
            for cam, minutes in snap.labels.items() if labels else ():
                rows = (
                    (cam, m, label, n)
                    for m, per in minutes.items()
                    if mid_lo <= m < mid_hi
                    for label, n in per.items()
                )
                add_labels(rows, MINUTE)
            source = "rollup"
        return WindowStats(
            window,
            {cam: (v[0], v[1]) for cam, v in sorted(counts.items())},
            dict(sorted(defects.items())),
            {cam: dict(sorted(v.items())) for cam, v in sorted(latency.items())},
            source,
        )

    def _current(self) -> _Snapshot | None:
        """The rollup brought up to the settle point; None when the database cannot be read."""
        now = self.clock()
        settled = int((now - self.settle_s) // MINUTE)
        with self._lock:
            snap = self._snapshot
        if snap is None:
            with self._build_lock:
                with self._lock:
                    snap = self._snapshot
                if snap is None:
                    snap = self._build(now)
                    with self._lock:
                        self._snapshot = snap
        if snap.hi < settled:
            with self._build_lock:
                with self._lock:
                    snap = self._snapshot
                assert snap is not None
                if snap.hi < settled:
                    begin, finish = _at(snap.hi), _at(settled)
                    snap.add(
                        camera_buckets(self.engine, begin, finish, MINUTE),
                        label_buckets(self.engine, begin, finish, MINUTE),
                    )
                    snap.hi = settled
        if now - snap.built_at > self.rebuild_s:
            self._schedule_rebuild()
        return snap

    def _build(self, now: float) -> _Snapshot:
        hi = int((now - self.settle_s) // MINUTE)
        lo = int((now - self.horizon_s) // MINUTE)
        started = time.perf_counter()
        snap = _Snapshot(lo=lo, hi=hi, built_at=now)
        begin, finish = _at(lo), _at(hi)
        snap.add(
            camera_buckets(self.engine, begin, finish, MINUTE),
            label_buckets(self.engine, begin, finish, MINUTE),
        )
        log.info(
            "statistics rollup built",
            extra={
                "minutes": hi - lo,
                "cameras": len(snap.cameras),
                "ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
        return snap

    def _schedule_rebuild(self) -> None:
        with self._lock:
            if self._rebuilding:
                return
            self._rebuilding = True
        threading.Thread(target=self._rebuild_quietly, name="rollup-rebuild", daemon=True).start()

    def _rebuild_quietly(self) -> None:
        try:
            snap = self._build(self.clock())
            with self._build_lock, self._lock:
                self._snapshot = snap
        except Exception as exc:
            log.warning("statistics rollup not rebuilt", extra={"error": str(exc)})
        finally:
            with self._lock:
                self._rebuilding = False


def counts_json(total: int, ng: int) -> dict[str, Any]:
    """Counts with their yield in percent (``None`` when there is nothing yet)."""
    return {
        "total": total,
        "ok": total - ng,
        "ng": ng,
        "yield_pct": None if total == 0 else round(100.0 * (total - ng) / total, 1),
    }


def iso(when: datetime) -> str:
    """ISO 8601 in UTC with a ``Z`` suffix and milliseconds, as browsers parse it."""
    text = when.astimezone(timezone.utc).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def window_json(window: Window) -> dict[str, Any]:
    return {
        "name": window.name,
        "label": WINDOW_LABELS[window.name],
        "from": iso(window.start),
        "to": iso(window.end),
    }


def stats_json(stats: WindowStats) -> dict[str, Any]:
    """The ``/api/stats`` payload."""
    labels = sorted({label for per in stats.defects.values() for label in per})
    total = sum(t for t, _ in stats.counts.values())
    ng = sum(n for _, n in stats.counts.values())
    w = stats.window
    return {
        "window": window_json(w),
        "totals": counts_json(total, ng),
        "cameras": {cam: counts_json(t, n) for cam, (t, n) in stats.counts.items()},
        "defects": {
            "bucket_s": w.defect_bucket_s,
            "labels": labels,
            "buckets": [
                {"start": iso(datetime.fromtimestamp(start, tz=timezone.utc)), "counts": per}
                for start, per in stats.defects.items()
            ],
            "totals": {
                label: sum(per.get(label, 0) for per in stats.defects.values()) for label in labels
            },
        },
        "latency": {
            "bucket_s": w.latency_bucket_s,
            "series": {
                cam: [
                    {
                        "start": iso(datetime.fromtimestamp(start, tz=timezone.utc)),
                        "mean_ms": round(acc.sum_ms / acc.total, 2) if acc.total else None,
                        "max_ms": round(acc.max_ms, 2),
                        "count": acc.total,
                    }
                    for start, acc in points.items()
                ]
                for cam, points in stats.latency.items()
            },
        },
        "source": stats.source,
    }
