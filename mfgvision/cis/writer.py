"""The writer thread: everything after inference, off the inference thread, in one durable order.

One writer serves every camera of a CIS module: their rows are committed together, their
announcements journaled under the module's id, so a restart replays them whatever cameras the
module runs by then.

For each outcome it draws and encodes the annotated image and writes the image files atomically; then,
for a whole batch of outcomes at once:

1. **journal**: each inference's row and the messages announcing it (``inference``, ``imageUpload`` and,
   when a detection reaches ``alert_probability`` or a rule yielding an alarm fired, one ``alerts``)
   go to the local announcement journal;
2. **store**: the rows are committed to the database, or, while it is away (or older rows still wait),
   to the outage spool. Only now is an inference durable on the device;
3. **announce**: the messages are handed to the hub, each carrying the inference's ``unique_id``;
4. once every message is confirmed (edgeHub's acknowledgement, ImageUpload's receipt: see
   :mod:`mfgvision.cis.delivery`), the journal entry is removed.

A crash anywhere leaves the entries in the journal and the next start does steps 2 to 4 again: rows are
written idempotently (never twice), messages may be sent twice (consumers drop duplicates by
``unique_id``). Rows are committed by group commit: the writer commits as soon as it is idle, and a
batch holds only what arrived while the previous commit ran (milliseconds at low load, throughput at
high load). When neither the database nor the spool takes rows, they wait in memory and nothing about
them is announced.

While the dashboard streams the camera (``store/live.py``), every outcome's annotated frame (the
frame itself when there is nothing to draw) also replaces the camera's live frame, whether or not
the outcome is stored, reusing the JPEG bytes already encoded for storage.

An image that cannot be written (a full disk) is skipped and counted with its reason; its row is kept
and says why (``image_error``). The queue in front of the writer holds at most ``maxsize`` outcomes of
each camera: when the disk or database is too slow, outcomes are dropped and counted instead of
stalling the camera, and no camera crowds out the others.

What happens to an outcome or a row is counted in its camera's metrics (:meth:`OutcomeWriter.attach`);
what concerns the module as a whole (delivery, receipts) and a camera no longer attached, in the
writer's own.
"""

from __future__ import annotations

import errno
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mfgvision.capture.jpeg import encode_jpeg
from mfgvision.cis.delivery import DeliveryTracker, Send
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
from mfgvision.store.images import image_name, write_atomic
from mfgvision.store.journal import Announcement, AnnouncementJournal, Message, journal_path
from mfgvision.store.live import is_watched, write_live_frame
from mfgvision.store.records import OK, InferenceRecord
from mfgvision.store.spool import RowSpool, row_spool_path

log = logging.getLogger(__name__)

_STOP = object()
# Rows held in memory only while neither the database nor the spool takes them (e.g. a full disk).
MAX_MEMORY_ROWS = 10_000
# How long rows held in memory wait before the writer tries to store them again.
RETRY_S = 2.0
# How often unconfirmed announcements are looked at (forgotten, sent again, given up).
DELIVERY_TICK_S = 0.5
DISK_FULL = "disk full"


class OutcomeWriter:
    """Stores and announces the inference outcomes of a module's cameras on its own thread."""

    def __init__(
        self,
        images_dir: Path,
        db: Database,
        send: Send,
        metrics: PipelineMetrics,
        owner: str,
        maxsize: int = 32,
        batch_rows: int = 64,
        spool: RowSpool | None = None,
        upload_receipts: bool = True,
        live_dir: Path | None = None,
    ) -> None:
        """``metrics``: the module's own figures; ``owner``: the module id, naming its journal
        entries; ``maxsize``: outcomes of one camera waiting at most; ``live_dir``: where live
        frames go while the dashboard watches (None: never)."""
        self.images_dir = images_dir
        self.live_dir = live_dir
        self.db = db
        self.metrics = metrics
        self.maxsize = maxsize
        self.batch_rows = batch_rows
        self.last_error: str | None = None
        #: Why the last image was not written (e.g. ``disk full``); None once one is written again.
        self.image_error: str | None = None
        self._queue: queue.Queue[Any] = queue.Queue()
        self._waiting: Counter[str] = Counter()
        self._cameras: dict[str, PipelineMetrics] = {}
        self._lock = threading.Lock()
        self._held: list[Announcement] = []
        self._journal_error: str | None = None
        self._live_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)
        images_dir.mkdir(parents=True, exist_ok=True)
        # While the database is unreachable rows wait on disk, in order, not in memory.
        self.spool = spool if spool is not None else RowSpool(row_spool_path(images_dir), db)
        self.journal = AnnouncementJournal(journal_path(images_dir), owner)
        self.delivery = DeliveryTracker(
            self.journal, send, metrics, upload_receipts=upload_receipts
        )
        self._ticked = 0.0

    def start(self) -> None:
        self.spool.start()
        self._thread.start()

    def attach(self, camera_id: str, metrics: PipelineMetrics) -> None:
        """Count what happens to ``camera_id``'s outcomes and rows in ``metrics``."""
        with self._lock:
            self._cameras[camera_id] = metrics

    def detach(self, camera_id: str) -> None:
        """The camera is gone: what is left of it counts in the writer's own metrics."""
        with self._lock:
            self._cameras.pop(camera_id, None)

    def submit(self, outcome: Outcome) -> bool:
        """Queue an outcome; False (and counted as dropped) when ``maxsize`` outcomes of its camera
        wait already."""
        camera_id = outcome.settings.camera_id
        with self._lock:
            full = self._waiting[camera_id] >= self.maxsize
            if not full:
                self._waiting[camera_id] += 1
        if full:
            self._metrics(camera_id).count("dropped_outcomes")
            return False
        self._queue.put(outcome)
        return True

    def _taken(self, outcome: Outcome) -> None:
        camera_id = outcome.settings.camera_id
        with self._lock:
            self._waiting[camera_id] -= 1
            if self._waiting[camera_id] <= 0:
                del self._waiting[camera_id]

    def _metrics(self, camera_id: str) -> PipelineMetrics:
        """Where ``camera_id``'s figures go: its own metrics while it is attached."""
        with self._lock:
            return self._cameras.get(camera_id, self.metrics)

    def _count_rows(self, records: Sequence[InferenceRecord], name: str) -> None:
        """Count ``records`` under ``name``, each in its camera's metrics."""
        for camera_id, n in Counter(r.camera_id for r in records).items():
            self._metrics(camera_id).count(name, n)

    def _each_camera(self, records: Sequence[InferenceRecord]) -> list[PipelineMetrics]:
        """The metrics of every camera with a row in ``records`` (a batch-wide event counts in each)."""
        return [
            self._metrics(camera_id) for camera_id in dict.fromkeys(r.camera_id for r in records)
        ]

    def stop(self, timeout: float = 8.0) -> None:
        """Write everything queued, store and announce it, then stop."""
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self.delivery.finish()
        self.spool.close()
        self.journal.close()

    @property
    def pending_rows(self) -> int:
        """Rows not yet in the database: those held in memory plus those waiting in the spool."""
        return len(self._held) + self.spool.pending

    def problems(self) -> list[str]:
        """What is wrong with storing right now (empty when nothing is)."""
        reasons = []
        if self.image_error is not None:
            reasons.append(f"images not written: {self.image_error}")
        if self.spool.pending:
            reasons.append(f"database unreachable: {self.spool.pending} rows spooled")
        if self._held:
            reasons.append(f"rows not stored: {len(self._held)} held in memory")
        if self._journal_error is not None:
            reasons.append(f"announcement journal not writable: {self._journal_error}")
        resent = self.delivery.unconfirmed()["resent"]
        if resent:
            reasons.append(
                f"upload requests without a receipt from ImageUpload: {resent} sent again "
                "(is ImageUpload running, with its uploadReceipts route to this module?)"
            )
        return reasons

    def _run(self) -> None:
        self._replay()
        while True:
            outcomes, stop = self._next_batch()
            entries = [e for e in map(self._prepare_safely, outcomes) if e is not None]
            self._commit(entries)
            self._tick()
            if stop:
                self._settle()
                return

    def _tick(self) -> None:
        """Look at unconfirmed announcements, at most every ``DELIVERY_TICK_S``."""
        now = time.monotonic()
        if now - self._ticked >= DELIVERY_TICK_S:
            self._ticked = now
            self.delivery.tick()

    def _settle(self, wait_s: float = 1.5) -> None:
        """At shutdown, give acknowledgements and receipts in flight a moment to arrive."""
        deadline = time.monotonic() + wait_s
        while self.delivery.in_flight() and time.monotonic() < deadline:
            time.sleep(0.05)

    def _replay(self) -> None:
        """Store and announce what an earlier run journaled but did not finish (a crash)."""
        try:
            waiting = self.journal.waiting()
        except Exception:
            log.exception("the announcement journal cannot be read, nothing replayed")
            return
        if waiting:
            log.warning("replaying journaled inferences", extra={"rows": len(waiting)})
            self._commit(waiting, replay=True)

    def _next_batch(self) -> tuple[list[Outcome], bool]:
        """Wait for an outcome, then take whatever else is queued (at most ``batch_rows``)."""
        timeout = RETRY_S if self._held else DELIVERY_TICK_S if self.delivery.pending() else None
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return [], False
        batch: list[Outcome] = []
        while item is not _STOP:
            self._taken(item)
            batch.append(item)
            if len(batch) >= self.batch_rows:
                return batch, False
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return batch, False
        return batch, True

    def _prepare_safely(self, outcome: Outcome) -> Announcement | None:
        """:meth:`_prepare`, with any failure counted and logged instead of raised."""
        try:
            return self._prepare(outcome)
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            self._metrics(outcome.settings.camera_id).count("write_errors")
            log.exception("storing an inference failed", extra={"unique_id": outcome.unique_id})
            return None

    def _prepare(self, outcome: Outcome) -> Announcement | None:
        """Write the outcome's images and build its row and messages; None when it is not stored."""
        s = outcome.settings
        metrics = self._metrics(s.camera_id)
        detections = outcome.result.detections
        judgement = outcome.judgement
        # nothing found, and no part missing nor an alarm raised by the rules
        passed = not detections and judgement.verdict == OK and not judgement.alarms
        if passed and not s.store_all_inferences and outcome.trigger_id is None:
            metrics.count("not_stored")
            if self._watched(outcome):
                self._write_live(outcome, self._raw_jpeg(outcome, metrics), metrics)
            return None
        record = InferenceRecord(
            unique_id=outcome.unique_id,
            created=outcome.frame.captured_at,
            camera_id=s.camera_id,
            camera_name=s.camera_name,
            model_name=outcome.model_name,
            model_version=outcome.model_version,
            inferencing_time_ms=outcome.result.model_ms,
            frame_width=outcome.frame.width,
            frame_height=outcome.frame.height,
            detections=detections,
            prob_threshold=s.prob_threshold,
            settings_version=outcome.settings_version,
            given_verdict=judgement.verdict,
            fired_rules=judgement.fired,
        )
        written, shown = self._write_images(outcome, record, metrics)
        if self._watched(outcome):
            self._write_live(outcome, shown, metrics)
        where = (s.camera_location, s.camera_position)
        messages: list[Message] = [
            (
                INFERENCE_OUTPUT,
                inference_message(
                    record, *where, outcome.result.timings_ms, trigger_id=outcome.trigger_id
                ),
            )
        ]
        messages += [
            (IMAGE_UPLOAD_OUTPUT, upload_message(kind, name, path, record, *where))
            for kind, name, path in written
        ]
        alert = alert_message(record, *where, s.alert_probability)
        if alert is not None:
            messages.append((ALERTS_OUTPUT, alert))
            metrics.count("alerts")
        return Announcement(record, messages)

    def _commit(self, entries: list[Announcement], replay: bool = False) -> None:
        """Journal, store and announce ``entries`` (after any held in memory), in that order."""
        batch = self._held + entries
        if not batch:
            return
        self._journal(batch)
        if not self._store(batch, replay):
            self._hold(batch)
            return
        self._held = []
        self.delivery.announce(batch)

    def _journal(self, batch: list[Announcement]) -> None:
        """Protect the batch's announcements against a crash; on failure they go unprotected."""
        try:
            self.journal.append(batch)
        except Exception as exc:
            for metrics in self._each_camera([e.record for e in batch]):
                metrics.count("journal_errors")
            if self._journal_error is None:
                log.error(
                    "announcements not journaled (a crash now would not re-send them)",
                    extra={"rows": len(batch), "error": str(exc)[:300]},
                )
            self._journal_error = f"{type(exc).__name__}: {exc}"[:300]
            return
        if self._journal_error is not None:
            log.info("announcements journaled again", extra={"after": self._journal_error})
            self._journal_error = None

    def _store(self, batch: list[Announcement], replay: bool) -> bool:
        """Make the rows durable: database first, else the spool; False when neither took them."""
        records = [e.record for e in batch]
        if self.spool.pending == 0:  # nothing waits ahead of these rows: straight to the database
            t0 = time.perf_counter()
            try:
                self.db.write(records)
            except Exception as exc:
                self.last_error = f"database: {type(exc).__name__}: {exc}"
                for metrics in self._each_camera(records):
                    metrics.count("db_errors")
                log.error(
                    "database write failed, rows go to the spool",
                    extra={"rows": len(records), "error": str(exc)[:300]},
                )
            else:
                done, took_ms = time.time(), (time.perf_counter() - t0) * 1000
                for metrics in self._each_camera(records):
                    metrics.time("db_write", took_ms)
                if not replay:
                    for record in records:
                        self._metrics(record.camera_id).time(
                            "frame_to_row", (done - record.created.timestamp()) * 1000
                        )
                self._count_rows(records, "rows_written")
                self.last_error = None
                return True
        try:
            self.spool.append(records)
        except Exception as exc:
            self.last_error = f"spool: {type(exc).__name__}: {exc}"
            for metrics in self._each_camera(records):
                metrics.count("spool_errors")
            log.error(
                "rows could not be spooled, kept in memory for retry",
                extra={"rows": len(records), "error": str(exc)[:300]},
            )
            return False
        self._count_rows(records, "rows_spooled")
        return True

    def _hold(self, batch: list[Announcement]) -> None:
        """Keep rows that nothing took in memory (the newest ``MAX_MEMORY_ROWS``) for a retry."""
        lost = len(batch) - MAX_MEMORY_ROWS
        if lost > 0:
            self._count_rows([e.record for e in batch[:lost]], "rows_lost")
            del batch[:lost]
            log.error("rows held in memory over the limit dropped", extra={"lost": lost})
        self._held = batch

    def _watched(self, outcome: Outcome) -> bool:
        """True when live frames are on and the dashboard watches this camera."""
        return self.live_dir is not None and is_watched(self.live_dir, outcome.settings.camera_id)

    def _write_live(self, outcome: Outcome, jpeg: bytes, metrics: PipelineMetrics) -> None:
        """Replace the camera's live frame; a failure is counted and logged once, never raised."""
        assert self.live_dir is not None
        t0 = time.perf_counter()
        try:
            write_live_frame(self.live_dir, outcome.settings.camera_id, jpeg)
        except (OSError, ValueError) as exc:
            metrics.count("live_frame_errors")
            if self._live_error is None:
                log.warning("live frame not written", extra={"error": str(exc)[:300]})
            self._live_error = f"{type(exc).__name__}: {exc}"[:300]
            return
        metrics.time("live_frame", (time.perf_counter() - t0) * 1000)
        self._live_error = None

    def _write_images(
        self, outcome: Outcome, record: InferenceRecord, metrics: PipelineMetrics
    ) -> tuple[list[tuple[str, str, str]], bytes]:
        """Write the annotated, raw and retraining images this outcome calls for; returns what was
        written and the JPEG that shows the outcome (annotated, or the frame when nothing is drawn).

        An image that cannot be written is skipped and counted; ``record.image_error`` says why.
        """
        s, frame = outcome.settings, outcome.frame
        written: list[tuple[str, str, str]] = []
        skipped: dict[str, list[str]] = {}

        def put(kind: str, data: bytes) -> tuple[str, str] | tuple[None, None]:
            name = image_name(s.camera_location, s.camera_position, frame.captured_at, kind)  # type: ignore[arg-type]
            path = self.images_dir / name
            reason = self._write_file(path, data, metrics)
            if reason is not None:
                skipped.setdefault(reason, []).append(kind)
                return None, None
            written.append((kind, name, str(path)))
            return name, str(path)

        raw_bytes: bytes | None = None
        if s.store_raw_frames or outcome.retrain or not record.detections:
            raw_bytes = self._raw_jpeg(outcome, metrics)
        shown = raw_bytes
        if record.detections:
            t0 = time.perf_counter()
            drawn = draw_detections(outcome.image.copy(), outcome.image_result.detections)
            t1 = time.perf_counter()
            shown = encode_jpeg(drawn, s.jpeg_quality)
            metrics.time("annotate", (t1 - t0) * 1000)
            metrics.time("encode", (time.perf_counter() - t1) * 1000)
            record.annotated_image_name, record.annotated_image_path = put("annotated", shown)
        if raw_bytes is not None and (s.store_raw_frames or not record.detections):
            record.raw_image_name, record.raw_image_path = put("raw", raw_bytes)
        if raw_bytes is not None and outcome.retrain:
            record.retrain_image_name, record.retrain_image_path = put("retrain", raw_bytes)
            record.retrain_reason = outcome.retrain if record.retrain_image_name else None
        if record.annotated_image_name is None and not record.detections:
            record.annotated_image_name = record.raw_image_name
            record.annotated_image_path = record.raw_image_path
        if skipped:
            record.image_error = "; ".join(
                f"{reason}: {', '.join(kinds)} not written" for reason, kinds in skipped.items()
            )
        assert shown is not None  # the raw JPEG is made whenever there is nothing to draw
        return written, shown

    def _write_file(self, path: Path, data: bytes, metrics: PipelineMetrics) -> str | None:
        """Write one image atomically; the reason (counted, logged) when it cannot be, else None."""
        t0 = time.perf_counter()
        try:
            write_atomic(path, data)
        except OSError as exc:
            reason = DISK_FULL if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "write failed"
            metrics.count("images_skipped")
            metrics.count(f"images_skipped_{reason.replace(' ', '_')}")
            if self.image_error != reason:
                log.error(
                    "image not written, skipped; its row is kept",
                    extra={"image": path.name, "reason": reason, "error": str(exc)[:300]},
                )
            self.image_error = reason
            return reason
        metrics.time("write_file", (time.perf_counter() - t0) * 1000)
        if self.image_error is not None:
            log.info("images written again", extra={"after": self.image_error})
            self.image_error = None
        return None

    def _raw_jpeg(self, outcome: Outcome, metrics: PipelineMetrics) -> bytes:
        """The frame as JPEG: the camera's own bytes when it sent JPEG (never re-encoded)."""
        if outcome.frame.jpeg is not None:
            return outcome.frame.jpeg
        t0 = time.perf_counter()
        image = outcome.frame.image if outcome.frame.image is not None else outcome.image
        data = encode_jpeg(image, outcome.settings.jpeg_quality)
        metrics.time("encode", (time.perf_counter() - t0) * 1000)
        return data
