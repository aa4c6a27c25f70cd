"""Delivery of a CIS's announcements: every message is tracked until it is confirmed, then forgotten.

What confirms a message:

* ``inference`` and ``alerts`` (to IoT Hub): edgeHub's acknowledgement, then ``settle_s`` connected.
  When the connection drops, the messages edgeHub acknowledged within ``settle_s`` before are at risk
  (an edgeHub that restarts without its store loses what it had not passed on, and the client cannot
  tell such a restart from a network blip); they are sent again once the connection is back.
* ``imageUpload`` (to ImageUpload): ImageUpload's **receipt**, a message on the CIS's
  ``uploadReceipts`` input sent once the request is in ImageUpload's durable outbox. A request the hub
  acknowledged and no receipt followed within ``resend_s`` (ImageUpload killed with the request in
  memory, a hub that lost it) is sent again, with growing intervals (``resend_s`` doubling up to
  ``resend_max_s``). A receipt saying ``rejected`` confirms too: sending again cannot help; it is
  counted and logged. With ``upload_receipts`` off (no route back from ImageUpload) an upload request
  is confirmed like an ``inference`` message.

An announcement leaves the journal only when all its messages are confirmed, so a crash at any moment
sends again what was not confirmed (consumers drop duplicates by ``unique_id``; ImageUpload uploads an
image once). What stays unconfirmed for ``ttl_s`` (edgeHub's own store-and-forward time) is given up:
counted, logged, removed. At most ``max_tracked`` announcements are tracked; beyond that the oldest are
given up the same way, so a long outage cannot exhaust memory.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mfgvision.cis.messages import IMAGE_UPLOAD_OUTPUT
from mfgvision.cis.metrics import PipelineMetrics
from mfgvision.edge.hub import HubMessage
from mfgvision.store.journal import Announcement, AnnouncementJournal

log = logging.getLogger(__name__)

#: ``send(output, body, on_sent)``: hand a message to the hub; ``on_sent`` runs once edgeHub has it.
Send = Callable[[str, dict[str, Any], Callable[[], None]], None]

SETTLE_S = 30.0
RESEND_S = 60.0
RESEND_MAX_S = 1800.0
TTL_S = 7200.0
MAX_TRACKED = 5_000
MAX_RECEIPTS = 1000


class ReceiptError(ValueError):
    """A message on the receipts input that is not a receipt."""


def parse_receipts(message: HubMessage) -> list[tuple[str, str, str | None]]:
    """``(unique_id, img_name, rejected reason or None)`` of each receipt in a receipts message."""
    try:
        body = message.json()
    except (ValueError, RecursionError) as exc:
        raise ReceiptError(f"body is not JSON: {exc}"[:200]) from None
    receipts = body.get("receipts") if isinstance(body, dict) else None
    if not isinstance(receipts, list) or len(receipts) > MAX_RECEIPTS:
        raise ReceiptError(f"expected {{'receipts': [...]}} with at most {MAX_RECEIPTS} entries")
    parsed = []
    for item in receipts:
        if not isinstance(item, dict):
            raise ReceiptError("a receipt is not an object")
        uid, name, rejected = item.get("unique_id"), item.get("img_name"), item.get("rejected")
        if not isinstance(uid, str) or not isinstance(name, str):
            raise ReceiptError("a receipt without unique_id or img_name")
        parsed.append((uid, name, str(rejected)[:300] if rejected is not None else None))
    return parsed


@dataclass
class _Message:
    output: str
    body: dict[str, Any]
    by_receipt: bool
    sent_at: float
    acked_at: float | None = None
    confirmed: bool = False
    attempts: int = 1
    #: Taken by edgeHub shortly before the connection dropped: sent again once it is back.
    at_risk: bool = False


@dataclass
class _Tracked:
    entry: Announcement
    messages: list[_Message] = field(default_factory=list)

    @property
    def first_sent(self) -> float:
        return min(m.sent_at for m in self.messages) if self.messages else 0.0


class DeliveryTracker:
    """Sends announcements and keeps them in the journal until every message is confirmed."""

    def __init__(
        self,
        journal: AnnouncementJournal,
        send: Send,
        metrics: PipelineMetrics,
        *,
        upload_receipts: bool = True,
        settle_s: float = SETTLE_S,
        resend_s: float = RESEND_S,
        resend_max_s: float = RESEND_MAX_S,
        ttl_s: float = TTL_S,
        max_tracked: int = MAX_TRACKED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.journal = journal
        self.metrics = metrics
        self.upload_receipts = upload_receipts
        self.settle_s = settle_s
        self.resend_s = resend_s
        self.resend_max_s = resend_max_s
        self.ttl_s = ttl_s
        self.max_tracked = max_tracked
        self._send = send
        self._clock = clock
        self._lock = threading.Lock()
        self._tracked: dict[str, _Tracked] = {}
        self._refused_reason: str | None = None

    # -- sending --------------------------------------------------------------------------------

    def announce(self, entries: list[Announcement]) -> None:
        """Send every message of ``entries`` (already durable) and track it."""
        now = self._clock()
        sends: list[_Message] = []
        with self._lock:
            for entry in entries:
                tracked = _Tracked(entry)
                for output, body in entry.messages:
                    by_receipt = self.upload_receipts and output == IMAGE_UPLOAD_OUTPUT
                    message = _Message(output, body, by_receipt, now)
                    tracked.messages.append(message)
                    sends.append(message)
                self._tracked[entry.record.unique_id] = tracked
        for message in sends:
            self._hand_over(message)
        self._limit()

    def _hand_over(self, message: _Message) -> None:
        def on_sent() -> None:
            with self._lock:
                message.acked_at = self._clock()

        try:
            self._send(message.output, message.body, on_sent)
        except Exception as exc:  # the hub refused it: it stays unacknowledged and is sent again
            self.metrics.count("announce_errors")
            log.error(
                "message not handed to the hub, sent again later",
                extra={"output": message.output, "error": f"{type(exc).__name__}: {exc}"[:300]},
            )

    # -- confirmations --------------------------------------------------------------------------

    def on_receipts(self, message: HubMessage) -> None:
        """ImageUpload's receipts: the upload requests they name are confirmed."""
        try:
            receipts = parse_receipts(message)
        except ReceiptError as exc:
            self.metrics.count("receipts_rejected")
            log.warning("receipt message ignored", extra={"error": str(exc)})
            return
        with self._lock:
            for uid, name, rejected in receipts:
                tracked = self._tracked.get(uid)
                if tracked is None:
                    continue
                for m in tracked.messages:
                    if m.by_receipt and m.body.get("img_name") == name and not m.confirmed:
                        m.confirmed = True
                        if rejected is not None:
                            self._refused(name, rejected)

    def _refused(self, name: str, reason: str) -> None:
        self.metrics.count("uploads_refused")
        if reason != self._refused_reason:
            log.error("ImageUpload refused an image", extra={"image": name, "reason": reason})
        self._refused_reason = reason

    def on_connection_change(self, connected: bool) -> None:
        """The connection to edgeHub dropped (messages it took within ``settle_s`` are at risk)
        or is back (what is at risk, and upload requests still without a receipt, go again)."""
        now = self._clock()
        again: list[_Message] = []
        with self._lock:
            for tracked in self._tracked.values():
                for m in tracked.messages:
                    if m.confirmed or m.acked_at is None:
                        continue
                    if not connected:
                        m.at_risk = m.by_receipt or now - m.acked_at < self.settle_s
                    elif m.at_risk:
                        m.at_risk = False
                        again.append(self._resent(m, now))
        if again:
            log.warning("edgeHub connection back, sending again", extra={"messages": len(again)})
            self.metrics.count("messages_resent", len(again))
        for m in again:
            self._hand_over(m)

    def _resent(self, m: _Message, now: float) -> _Message:
        m.acked_at = None
        m.sent_at = now
        m.attempts += 1
        return m

    # -- the writer's periodic step -------------------------------------------------------------

    def tick(self) -> None:
        """Forget what is confirmed, send again what is overdue, give up on what is too old."""
        now = self._clock()
        done: list[Announcement] = []
        expired: list[Announcement] = []
        again: list[_Message] = []
        with self._lock:
            for uid, tracked in list(self._tracked.items()):
                if all(self._settled(m, now) for m in tracked.messages):
                    done.append(tracked.entry)
                    del self._tracked[uid]
                elif now - tracked.first_sent > self.ttl_s:
                    expired.append(tracked.entry)
                    del self._tracked[uid]
                else:
                    again += [self._resent(m, now) for m in tracked.messages if self._due(m, now)]
        for m in again:
            self._hand_over(m)
        if again:
            self.metrics.count("messages_resent", len(again))
            log.warning(
                "upload requests without receipt sent again", extra={"messages": len(again)}
            )
        self._give_up(expired, "unconfirmed for longer than the time to live")
        self._forget(done)

    def _settled(self, m: _Message, now: float) -> bool:
        if m.by_receipt or m.confirmed:
            return m.confirmed
        return m.acked_at is not None and not m.at_risk and now - m.acked_at >= self.settle_s

    def _due(self, m: _Message, now: float) -> bool:
        """An upload request the hub took and no receipt followed in time."""
        if not m.by_receipt or m.confirmed or m.acked_at is None or m.at_risk:
            return False
        wait = min(self.resend_max_s, self.resend_s * 2 ** (m.attempts - 1))
        return now - m.acked_at >= wait

    def _limit(self) -> None:
        """Beyond ``max_tracked``: first forget the oldest that only wait out ``settle_s`` (taken by
        edgeHub), then give up the oldest of the rest."""
        with self._lock:
            over = len(self._tracked) - self.max_tracked
            if over <= 0:
                return
            taken = [uid for uid, t in self._tracked.items() if self._taken(t)][:over]
            done = [self._tracked.pop(uid).entry for uid in taken]
            over -= len(done)
            oldest = [self._tracked.pop(uid).entry for uid in list(self._tracked)[: max(0, over)]]
        self._forget(done)
        self._give_up(oldest, "more announcements unconfirmed than can be tracked")

    @staticmethod
    def _taken(tracked: _Tracked) -> bool:
        """Every message confirmed, or (confirmed by the hub) acknowledged by edgeHub."""
        return all(
            m.confirmed or (not m.by_receipt and m.acked_at is not None and not m.at_risk)
            for m in tracked.messages
        )

    def _give_up(self, entries: list[Announcement], why: str) -> None:
        if not entries:
            return
        self.metrics.count("announcements_given_up", len(entries))
        log.error("announcements given up", extra={"count": len(entries), "reason": why})
        self._forget(entries)

    def _forget(self, entries: list[Announcement]) -> None:
        if not entries:
            return
        try:
            self.journal.remove(entries)
        except Exception as exc:  # replayed after a restart: sent again, never stored twice
            log.error("journal entries not removed", extra={"error": str(exc)[:300]})

    def finish(self) -> None:
        """At shutdown: forget what edgeHub has acknowledged (it keeps its session) and what is
        confirmed; the rest stays journaled and is sent again at the next start."""
        with self._lock:
            done = [
                t.entry
                for t in self._tracked.values()
                if all(
                    m.confirmed or (not m.by_receipt and m.acked_at is not None) for m in t.messages
                )
            ]
            self._tracked.clear()
        self._forget(done)

    # -- status ---------------------------------------------------------------------------------

    def unconfirmed(self) -> dict[str, int]:
        """How many announcements wait, and how many upload requests wait for a receipt."""
        with self._lock:
            receipts = sum(
                1
                for t in self._tracked.values()
                for m in t.messages
                if m.by_receipt and not m.confirmed
            )
            resent = sum(
                1
                for t in self._tracked.values()
                for m in t.messages
                if m.by_receipt and not m.confirmed and m.attempts > 1
            )
            return {"announcements": len(self._tracked), "receipts": receipts, "resent": resent}

    def in_flight(self) -> int:
        """Messages neither confirmed nor, for those confirmed by the hub, acknowledged yet."""
        with self._lock:
            return sum(
                1
                for t in self._tracked.values()
                for m in t.messages
                if not m.confirmed and (m.by_receipt or m.acked_at is None or m.at_risk)
            )

    def pending(self) -> bool:
        """Whether anything waits for an acknowledgement or a receipt."""
        with self._lock:
            return bool(self._tracked)
