"""The ImageUpload module: ``imageUpload`` messages in, images in cloud storage out, each exactly once.

A message is validated and written to the durable outbox (``upload-outbox.db`` beside the images),
then a **receipt** goes out on the ``uploadReceipts`` output (routed back to the CIS that asked, which
sends the request again until one arrives: edgeHub acknowledges a message before the module has handled
it, so only the receipt says it is safe). A request refused for what it is gets a receipt saying
``rejected``; one that cannot be queued (the outbox's disk is full) gets none. A worker thread uploads the oldest due item and removes it only once the
blob exists. While storage is unreachable the worker pauses with a capped, growing back-off and every
image keeps its place in line; an image that fails on its own (a missing file, a name refused, other
content under its name) is retried with back-off and, after ``max_attempts`` such failures, parked as
``failed`` (kept, with its file protected from cleanup) and retried later. Before sending an image the
worker asks whether storage already has it: an identical blob (size and MD5) counts as done, so neither
a restart nor a redelivered message uploads anything twice.

Target: Azure Blob Storage through ``MFGVISION_STORAGE_CONNECTION_STRING`` (environment only), ADLS Gen2
on request, else a local folder for the demo. Settings come from the module twin
(``ImageUploadSettings``); status goes to reported properties. On SIGTERM the upload in flight is
finished and the rest stays queued for the next start.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mfgvision import __version__
from mfgvision.edge.desired import DesiredSettings, desired_file
from mfgvision.edge.hub import START_WAIT_S, Hub, HubMessage
from mfgvision.image_upload.targets import (
    Blob,
    LocalFolderTarget,
    TargetConfigError,
    UploadError,
    UploadTarget,
    create_target,
)
from mfgvision.settings import ImageUploadSettings
from mfgvision.store.outbox import OutboxItem, UploadOutbox, outbox_path

__all__ = [
    "RECEIPTS_OUTPUT",
    "UPLOAD_INPUT",
    "ImageUploadService",
    "LocalFolderTarget",
    "UploadRequestError",
    "parse_request",
]

log = logging.getLogger(__name__)

UPLOAD_INPUT = "imageUpload"
RECEIPTS_OUTPUT = "uploadReceipts"
STOP_TIMEOUT_S = 8.0
IDLE_WAIT_S = 1.0
#: A rejected upload request keeps the module ``degraded`` for this long after the last one.
REJECTED_RECENT_S = 600.0
SHOWN_CHARS = 120
CONTENT_TYPE = "image/jpeg"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,200}$")
_SAFE_BLOB = re.compile(r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+){0,8}$")
_CONTAINERS = {
    "annotated": "images-annotated",
    "raw": "images-frame",
    "retrain": "images-retraining",
}
# Message fields copied into blob metadata (metadata name: message field). Values are checked.
_METADATA = {
    "camera_id": "camera_id",
    "model_name": "model_name",
    "model_version": "model_version",
    "inference_id": "unique_id",
    "created": "created",
    "location": "location",
    "position": "position",
}
_METADATA_VALUE = re.compile(r"^[\x21-\x7e][\x20-\x7e]{0,127}$")


class UploadRequestError(ValueError):
    """An upload message that cannot be honoured (bad JSON, unsafe names, unknown container)."""


def parse_request(message: HubMessage) -> OutboxItem:
    """Validate an ``imageUpload`` body; only plain names, never paths, are trusted."""
    try:
        body = message.json()
    except (ValueError, RecursionError) as exc:
        raise UploadRequestError(f"body is not JSON: {_short(exc)}") from None
    if not isinstance(body, dict):
        raise UploadRequestError("body is not a JSON object")
    name, blob, container = body.get("img_name"), body.get("blob_name"), body.get("container")
    if not isinstance(name, str) or not _SAFE_NAME.match(name) or name.startswith("."):
        raise UploadRequestError(f"unsafe or missing img_name {_short(name)}")
    if not isinstance(blob, str) or not _SAFE_BLOB.match(blob) or ".." in blob.split("/"):
        raise UploadRequestError(f"unsafe or missing blob_name {_short(blob)}")
    kinds = {c: k for k, c in _CONTAINERS.items()}
    if not isinstance(container, str) or container not in kinds:
        raise UploadRequestError(f"unknown container {_short(container)}")
    kind = body.get("kind", kinds[container])
    if not isinstance(kind, str) or _CONTAINERS.get(kind) != container:
        raise UploadRequestError(f"kind {_short(kind)} does not go to container {container!r}")
    metadata = {"kind": kind}
    for key, field_name in _METADATA.items():
        value = body.get(field_name)
        if value is None:
            continue
        if not isinstance(value, str) or not _METADATA_VALUE.match(value):
            raise UploadRequestError(f"{field_name} must be printable ASCII, got {_short(value)}")
        metadata[key] = value
    return OutboxItem(
        container=str(container), blob_name=blob, img_name=name, kind=kind, metadata=metadata
    )


def _identity(message: HubMessage) -> tuple[str, str] | None:
    """``(unique_id, img_name)`` of a request that failed validation, when it names both."""
    try:
        body = message.json()
    except Exception:
        return None
    if not isinstance(body, dict):
        return None
    uid, name = body.get("unique_id"), body.get("img_name")
    if isinstance(uid, str) and isinstance(name, str) and len(uid) <= 200 and len(name) <= 200:
        return uid, name
    return None


def _short(value: object) -> str:
    """``repr(value)`` cut to a length fit for a log line and a status field."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}..."


class ImageUploadService:
    """Uploads each requested image once, from the images folder to the target, via the outbox."""

    def __init__(
        self,
        hub: Hub,
        images_dir: Path,
        target: UploadTarget | None = None,
        *,
        blobs_dir: Path | None = None,
        outbox: UploadOutbox | None = None,
    ) -> None:
        self.hub = hub
        self.images_dir = images_dir
        self.blobs_dir = blobs_dir or images_dir.parent / "blobs"
        self.outbox = outbox or UploadOutbox(outbox_path(images_dir))
        self.settings = DesiredSettings(
            ImageUploadSettings, desired_file(images_dir.parent, hub.module_id)
        )
        self.counters: dict[str, int] = {
            "uploaded": 0,
            "skipped": 0,
            "rejected": 0,
            "failed": 0,
            "errors": 0,
            "not_queued": 0,
        }
        self.outbox_error: str | None = None
        self.last_error: str | None = None
        self.last_error_at: str | None = None
        self.last_rejected: dict[str, str] | None = None
        self._rejected_at = -REJECTED_RECENT_S
        self.target_error: str | None = None
        self._fixed_target = target
        self._target: UploadTarget | None = target
        self._target_setting: str | None = None
        self._paused_until = 0.0
        self._outage_delay = 0.0
        self._next_requeue = 0.0
        self._state = "starting"
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._run, name="image-upload", daemon=True)
        self._reporter = threading.Thread(target=self._report_loop, name="reporter", daemon=True)

    @property
    def target(self) -> UploadTarget | None:
        return self._target

    def start(self) -> None:
        online = self.hub.connect(wait_s=START_WAIT_S)
        self.hub.on_input(UPLOAD_INPUT, self.handle)
        self.hub.on_method("status", lambda _payload: self.status())
        self.hub.on_method("retry_failed", self._retry_failed)
        self.hub.on_desired(self._apply)
        self._apply(self.settings.starting_point(self.hub, online), full=True)
        counts = self.outbox.counts()
        log.info(
            "image upload started",
            extra={"target": self._target_kind(), "queued": counts["queued"]},
        )
        self._state = "running"
        self._worker.start()
        self._reporter.start()

    def stop(self) -> None:
        """Finish the upload in flight, leave the rest queued, report, disconnect."""
        self._stop.set()
        self._wake.set()
        if self._worker.is_alive():
            self._worker.join(STOP_TIMEOUT_S)
        if self._reporter.is_alive():
            self._reporter.join(2.0)
        self._state = "stopped"
        self._report()
        self.hub.disconnect()
        if not self._worker.is_alive():
            self.outbox.close()
        log.info("image upload stopped", extra=dict(self.counters))

    def status(self) -> dict[str, Any]:
        counts = self.outbox.counts()
        oldest = self.outbox.oldest_age_s()
        state = self._state
        reasons = self._degraded_reasons()
        if state == "running" and self.target_error:
            state = "target_error"
        elif state == "running" and time.monotonic() < self._paused_until:
            state = "waiting_for_storage"
        elif state == "running" and reasons:
            state = "degraded"
        return {
            "software_version": __version__,
            "status": {
                "state": state,
                "reasons": reasons,
                "last_rejected": self.last_rejected,
                "target": self._target_kind(),
                "queued": counts["queued"],
                "failed": counts["failed"],
                **self.counters,
                "oldest_waiting_s": None if oldest is None else round(oldest, 1),
                "last_error": self.target_error or self.last_error,
                "last_error_at": self.last_error_at,
            },
            "config": self.settings.report(),
            "updated": datetime.now(timezone.utc).isoformat(),
        }

    def handle(self, message: HubMessage) -> None:
        """Validate an ``imageUpload`` message, queue it durably, then send its receipt.

        A message that cannot be honoured, whatever it throws, is counted as rejected, logged on one
        line and shown in the status; it never takes the input handler down. One that cannot be
        queued (the outbox's disk refuses it) is counted, and gets no receipt: its sender sends it
        again.
        """
        try:
            item = parse_request(message)
        except Exception as exc:
            error = self._reject(exc)
            self._receipt(_identity(message), rejected=error)
            return
        try:
            queued = self.outbox.enqueue(item)
        except Exception as exc:
            self.counters["not_queued"] += 1
            self._outbox_failed(exc)
            return
        self._outbox_works()
        if queued:
            self._wake.set()
        else:
            log.info("upload already queued", extra={"image": item.img_name})
        uid = item.metadata.get("inference_id")
        self._receipt(None if uid is None else (uid, item.img_name))

    def _receipt(self, identity: tuple[str, str] | None, rejected: str | None = None) -> None:
        """Tell the sender its request is safe (queued) or hopeless (``rejected``)."""
        if identity is None:
            return
        receipt: dict[str, str] = {"unique_id": identity[0], "img_name": identity[1]}
        if rejected is not None:
            receipt["rejected"] = rejected
        self.hub.send_to_output(RECEIPTS_OUTPUT, HubMessage.from_json({"receipts": [receipt]}))

    def _outbox_failed(self, exc: Exception) -> None:
        """The outbox file refuses writes (a full disk): one line per new error, not per message."""
        error = f"outbox: {type(exc).__name__}: {exc}"[:500]
        self._error(error)
        if error != self.outbox_error:
            log.error(
                "upload outbox not writable, requests wait at their sender", extra={"error": error}
            )
        self.outbox_error = error

    def _outbox_works(self) -> None:
        if self.outbox_error is not None:
            log.info("upload outbox writable again", extra={"after": self.outbox_error})
            self.outbox_error = None

    def _reject(self, exc: Exception) -> str:
        """Count and show a refused upload request; the error, as shown."""
        error = str(exc) if isinstance(exc, UploadRequestError) else f"{type(exc).__name__}: {exc}"
        error = error[:500]
        self.counters["rejected"] += 1
        self._rejected_at = time.monotonic()
        self.last_rejected = {"error": error, "at": datetime.now(timezone.utc).isoformat()}
        log.error("upload request rejected", extra={"error": error})
        return error

    def _degraded_reasons(self) -> list[str]:
        """What is wrong while the module still serves (empty when nothing is)."""
        reasons = []
        if self.outbox_error is not None:
            reasons.append(f"upload outbox not writable: {self.outbox_error}")
        if time.monotonic() - self._rejected_at < REJECTED_RECENT_S:
            reasons.append(f"upload requests rejected ({self.counters['rejected']} in all)")
        return reasons

    # -- settings ---------------------------------------------------------------------------------

    def _apply(self, desired: dict[str, Any], full: bool) -> None:
        with self._lock:
            self.settings.apply(desired, full)
            if self._fixed_target is None and self._target_setting != self._settings().target:
                self._build_target()
        self._report()
        self._wake.set()

    def _build_target(self) -> None:
        wanted = self._settings().target
        self._target_setting = wanted
        try:
            self._target = create_target(wanted, self.blobs_dir)
            self.target_error = None
        except TargetConfigError as exc:
            self._target = None
            self.target_error = str(exc)
            log.error("no upload target, images stay queued", extra={"error": str(exc)})

    def _settings(self) -> ImageUploadSettings:
        settings = self.settings.current
        assert isinstance(settings, ImageUploadSettings)
        return settings

    def _target_kind(self) -> str | None:
        return None if self._target is None else self._target.kind

    # -- the worker -------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                worked = self._step()
            except Exception as exc:  # the outbox file itself failing; keep trying, slowly
                self._outbox_failed(exc)
                worked = False
            else:
                self._outbox_works()
            if not worked:
                self._wake.wait(self._idle_wait())
                self._wake.clear()

    def _step(self) -> bool:
        """Upload one due item; False when there was nothing to do now."""
        settings = self._settings()
        now = time.time()
        if settings.failed_retry_s and now >= self._next_requeue:
            requeued = self.outbox.requeue_failed(parked_before=now - settings.failed_retry_s)
            if requeued:
                log.info("parked uploads queued again", extra={"items": requeued})
            self._next_requeue = now + min(settings.failed_retry_s, 60.0)
        target = self._target
        if target is None or time.monotonic() < self._paused_until:
            return False
        item = self.outbox.next_due(now)
        if item is None:
            return False
        self._upload(item, target, settings)
        return True

    def _upload(
        self, item: OutboxItem, target: UploadTarget, settings: ImageUploadSettings
    ) -> None:
        path = self.images_dir / item.img_name
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            self._item_failed(item, f"image file {item.img_name} is missing", settings, park=True)
            return
        except OSError as exc:
            self._item_failed(item, f"image file unreadable: {exc}", settings)
            return
        container = settings.containers.get(item.kind, item.container)
        blob = Blob(container, item.blob_name, data, CONTENT_TYPE, item.metadata)
        try:
            uploaded = target.put(blob)
        except UploadError as exc:
            if exc.outage:
                self._outage(item, str(exc), settings)
            else:
                self._item_failed(item, str(exc), settings)
            return
        except Exception as exc:  # an SDK surprise: count it against the image, with back-off
            self._item_failed(item, f"{type(exc).__name__}: {exc}", settings)
            return
        self.outbox.ack(item.id)
        self._outage_delay = 0.0
        self.counters["uploaded" if uploaded else "skipped"] += 1
        log.debug(
            "image uploaded" if uploaded else "image already in storage",
            extra={"image": item.img_name, "container": container, "blob": item.blob_name},
        )

    def _outage(self, item: OutboxItem, error: str, settings: ImageUploadSettings) -> None:
        """Storage is away: pause everything, the image keeps its place."""
        self._outage_delay = min(
            max(self._outage_delay * 2, settings.backoff_initial_s), settings.backoff_max_s
        )
        self._paused_until = time.monotonic() + self._outage_delay
        self.outbox.note_outage(item.id, error)
        self._error(error)
        log.warning(
            "storage unavailable, uploads paused",
            extra={"retry_in_s": self._outage_delay, "error": error},
        )

    def _item_failed(
        self, item: OutboxItem, error: str, settings: ImageUploadSettings, park: bool = False
    ) -> None:
        failures = item.failures + 1
        delay = min(settings.backoff_initial_s * 2 ** (failures - 1), settings.backoff_max_s)
        failures = self.outbox.retry_later(item.id, delay, error, count_failure=True)
        self._error(error)
        if park or failures >= settings.max_attempts:
            self.outbox.park(item.id, error)
            self.counters["failed"] += 1
            log.error(
                "upload parked as failed",
                extra={"image": item.img_name, "failures": failures, "error": error},
            )
        else:
            log.warning(
                "upload failed, will retry",
                extra={"image": item.img_name, "retry_in_s": delay, "error": error},
            )

    def _error(self, error: str) -> None:
        self.counters["errors"] += 1
        self.last_error = error[:500]
        self.last_error_at = datetime.now(timezone.utc).isoformat()

    def _idle_wait(self) -> float:
        wait = IDLE_WAIT_S
        paused = self._paused_until - time.monotonic()
        if paused > 0:
            wait = min(wait, paused)
        return max(wait, 0.01)

    def _retry_failed(self, _payload: Any) -> dict[str, Any]:
        requeued = self.outbox.requeue_failed()
        self._wake.set()
        return {"requeued": requeued}

    # -- reporting --------------------------------------------------------------------------------

    def _report(self) -> None:
        self.hub.report(self.status)

    def _report_loop(self) -> None:
        while not self._stop.wait(self._settings().report_every_s):
            self._report()
