"""The writer thread: everything after inference, off the inference thread.

For each outcome it draws and encodes the annotated image, writes image files atomically, sends the
``inference`` and ``imageUpload`` messages (and an ``alerts`` message when a detection reaches
``alert_probability``), and queues the database rows, which go out in batches. The
queue in front of it is bounded: when the disk or database is too slow, outcomes are dropped and counted
instead of stalling the camera.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mfgvision.cis.messages import (
    ALERTS_OUTPUT,
    IMAGE_UPLOAD_OUTPUT,
    INFERENCE_OUTPUT,
    alert_message,
    inference_message,
    upload_message,
)
from mfgvision.cis.metrics import PipelineMetrics
from mfgvision.cis.outcome import Outcome
from mfgvision.inference.annotate import draw_detections
from mfgvision.store.database import Database
from mfgvision.store.images import encode_jpeg, image_name, write_atomic
from mfgvision.store.records import InferenceRecord
from mfgvision.store.spool import RowSpool, row_spool_path

log = logging.getLogger(__name__)

Emit = Callable[[str, dict[str, Any]], None]
_STOP = object()
# Rows held in memory only while neither the database nor the spool takes them (e.g. a full disk).
MAX_MEMORY_ROWS = 10_000


class OutcomeWriter:
    """Stores and announces inference outcomes on its own thread."""

    def __init__(
        self,
        images_dir: Path,
        db: Database,
        emit: Emit,
        metrics: PipelineMetrics,
        maxsize: int = 32,
        batch_rows: int = 64,
        flush_s: float = 0.25,
        spool: RowSpool | None = None,
    ) -> None:
        self.images_dir = images_dir
        self.db = db
        self.emit = emit
        self.metrics = metrics
        self.batch_rows = batch_rows
        self.flush_s = flush_s
        self.last_error: str | None = None
        self.on_stored: Callable[[Outcome, InferenceRecord], None] | None = None
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=maxsize)
        self._pending: list[tuple[InferenceRecord, float]] = []
        self._oldest: float | None = None
        self._retry_at = 0.0
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)
        images_dir.mkdir(parents=True, exist_ok=True)
        # While the database is unreachable rows wait on disk, in order, not in memory.
        self.spool = spool if spool is not None else RowSpool(row_spool_path(images_dir), db)

    def start(self) -> None:
        self.spool.start()
        self._thread.start()

    def submit(self, outcome: Outcome) -> bool:
        """Queue an outcome; False (and counted as dropped) when the writer is full."""
        try:
            self._queue.put_nowait(outcome)
            return True
        except queue.Full:
            self.metrics.count("dropped_outcomes")
            return False

    def stop(self, timeout: float = 8.0) -> None:
        """Write everything queued, flush rows, then stop."""
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self.spool.close()

    @property
    def pending_rows(self) -> int:
        """Rows not yet in the database: this batch plus those waiting in the spool."""
        return len(self._pending) + self.spool.pending

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self.flush_s / 2)
            except queue.Empty:
                item = None
            if item is _STOP:
                self._flush(force=True)
                return
            if item is not None:
                try:
                    self._handle(item)
                except Exception as exc:
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    self.metrics.count("write_errors")
                    log.exception(
                        "storing an inference failed", extra={"unique_id": item.unique_id}
                    )
            self._flush(force=False)

    def _handle(self, outcome: Outcome) -> None:
        s = outcome.settings
        detections = outcome.result.detections
        if not detections and not s.store_all_inferences:
            self.metrics.count("not_stored")
            return
        created = outcome.frame.captured_at
        record = InferenceRecord(
            unique_id=outcome.unique_id,
            created=created,
            camera_id=s.camera_id,
            camera_name=s.camera_name,
            model_name=outcome.model_name,
            model_version=outcome.model_version,
            inferencing_time_ms=sum(outcome.result.timings_ms.values()),
            frame_width=outcome.frame.width,
            frame_height=outcome.frame.height,
            detections=detections,
        )
        written = self._write_images(outcome, record)
        self.emit(
            INFERENCE_OUTPUT,
            inference_message(
                record, s.camera_location, s.camera_position, outcome.result.timings_ms
            ),
        )
        for kind, name, path in written:
            self.emit(
                IMAGE_UPLOAD_OUTPUT,
                upload_message(kind, name, path, record, s.camera_location, s.camera_position),
            )
        alert = alert_message(record, s.camera_location, s.camera_position, s.alert_probability)
        if alert is not None:
            self.emit(ALERTS_OUTPUT, alert)
            self.metrics.count("alerts")
        self._pending.append((record, outcome.frame.captured_at.timestamp()))
        if self._oldest is None:
            self._oldest = time.monotonic()
        if self.on_stored is not None:
            self.on_stored(outcome, record)

    def _write_images(
        self, outcome: Outcome, record: InferenceRecord
    ) -> list[tuple[str, str, str]]:
        """Write the annotated, raw and retraining images this outcome calls for."""
        s, frame = outcome.settings, outcome.frame
        written: list[tuple[str, str, str]] = []

        def put(kind: str, data: bytes) -> str:
            name = image_name(s.camera_location, s.camera_position, frame.captured_at, kind)  # type: ignore[arg-type]
            path = self.images_dir / name
            t0 = time.perf_counter()
            write_atomic(path, data)
            self.metrics.time("write_file", (time.perf_counter() - t0) * 1000)
            written.append((kind, name, str(path)))
            return name

        raw_bytes: bytes | None = None
        if s.store_raw_frames or outcome.retrain or not record.detections:
            raw_bytes = self._raw_jpeg(outcome)
        if record.detections:
            t0 = time.perf_counter()
            drawn = draw_detections(outcome.image.copy(), outcome.image_result.detections)
            t1 = time.perf_counter()
            data = encode_jpeg(drawn, s.jpeg_quality)
            self.metrics.time("annotate", (t1 - t0) * 1000)
            self.metrics.time("encode", (time.perf_counter() - t1) * 1000)
            record.annotated_image_name = put("annotated", data)
            record.annotated_image_path = str(self.images_dir / record.annotated_image_name)
        if raw_bytes is not None and (s.store_raw_frames or not record.detections):
            record.raw_image_name = put("raw", raw_bytes)
            record.raw_image_path = str(self.images_dir / record.raw_image_name)
        if raw_bytes is not None and outcome.retrain:
            put("retrain", raw_bytes)
        if record.annotated_image_name is None:
            record.annotated_image_name = record.raw_image_name
            record.annotated_image_path = record.raw_image_path
        return written

    def _raw_jpeg(self, outcome: Outcome) -> bytes:
        """The frame as JPEG: the camera's own bytes when it sent JPEG (never re-encoded)."""
        if outcome.frame.jpeg is not None:
            return outcome.frame.jpeg
        t0 = time.perf_counter()
        image = outcome.frame.image if outcome.frame.image is not None else outcome.image
        data = encode_jpeg(image, outcome.settings.jpeg_quality)
        self.metrics.time("encode", (time.perf_counter() - t0) * 1000)
        return data

    def _flush(self, force: bool) -> None:
        if not self._pending:
            return
        now = time.monotonic()
        due = len(self._pending) >= self.batch_rows or (now - (self._oldest or now)) >= self.flush_s
        if not force and (not due or now < self._retry_at):
            return
        batch = [r for r, _ in self._pending]
        if self.spool.pending == 0:  # nothing waits ahead of these rows: straight to the database
            t0 = time.perf_counter()
            try:
                self.db.write(batch)
            except Exception as exc:
                self.last_error = f"database: {type(exc).__name__}: {exc}"
                self.metrics.count("db_errors")
                log.error(
                    "database write failed, rows go to the spool",
                    extra={"rows": len(batch), "error": str(exc)[:300]},
                )
            else:
                done = time.time()
                self.metrics.time("db_write", (time.perf_counter() - t0) * 1000)
                for _, captured in self._pending:
                    self.metrics.time("frame_to_row", (done - captured) * 1000)
                self.metrics.count("rows_written", len(batch))
                self._clear_pending()
                self.last_error = None
                return
        try:
            self.spool.append(batch)
        except Exception as exc:
            self.last_error = f"spool: {type(exc).__name__}: {exc}"
            self.metrics.count("spool_errors")
            self._retry_at = now + 2.0
            lost = len(self._pending) - MAX_MEMORY_ROWS
            if lost > 0:
                del self._pending[:lost]
                self.metrics.count("rows_lost", lost)
            log.error(
                "rows could not be spooled, kept in memory for retry",
                extra={"rows": len(self._pending), "lost": max(lost, 0), "error": str(exc)[:300]},
            )
            return
        self.metrics.count("rows_spooled", len(batch))
        self._clear_pending()

    def _clear_pending(self) -> None:
        self._pending.clear()
        self._oldest = None
