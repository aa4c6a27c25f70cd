"""Delivery tracking: an announcement leaves the journal only once every message is confirmed (hub
acknowledgement and settle time, ImageUpload's receipt), what is not confirmed is sent again, and what
stays unconfirmed too long is given up and counted."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from mfgvision.cis.delivery import DeliveryTracker, ReceiptError, parse_receipts
from mfgvision.cis.metrics import PipelineMetrics
from mfgvision.edge.hub import HubMessage
from mfgvision.store.journal import Announcement, AnnouncementJournal
from mfgvision.store.records import InferenceRecord
from tests.cis.outcomes import OWNER


class Hub:
    """Records what is sent; acknowledges it when told to."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.unacked: list[Callable[[], None]] = []
        self.auto_ack = True

    def __call__(self, output: str, body: dict[str, Any], on_sent: Callable[[], None]) -> None:
        self.sent.append((output, body))
        if self.auto_ack:
            on_sent()
        else:
            self.unacked.append(on_sent)

    def outputs(self, output: str) -> list[str]:
        return [b["unique_id"] for o, b in self.sent if o == output]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def entry(uid: str) -> Announcement:
    record = InferenceRecord(
        unique_id=uid,
        created=datetime.now(timezone.utc),
        camera_id="cam",
        camera_name="cam",
        model_name="m",
        model_version="1",
        inferencing_time_ms=1.0,
        frame_width=4,
        frame_height=4,
        detections=[],
    )
    return Announcement(
        record,
        [
            ("inference", {"unique_id": uid}),
            ("imageUpload", {"unique_id": uid, "img_name": f"{uid}.jpg"}),
        ],
    )


def receipt(uid: str, rejected: str | None = None) -> HubMessage:
    item: dict[str, Any] = {"unique_id": uid, "img_name": f"{uid}.jpg"}
    if rejected is not None:
        item["rejected"] = rejected
    return HubMessage.from_json({"receipts": [item]})


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[tuple[AnnouncementJournal, Hub, Clock, PipelineMetrics]]:
    journal = AnnouncementJournal(tmp_path / "journal.db", OWNER)
    yield journal, Hub(), Clock(), PipelineMetrics()
    journal.close()


def tracker(parts: Any, **kwargs: Any) -> DeliveryTracker:
    journal, hub, clock, metrics = parts
    return DeliveryTracker(journal, hub, metrics, clock=clock, **kwargs)


def announce(t: DeliveryTracker, *uids: str) -> list[Announcement]:
    entries = [entry(u) for u in uids]
    t.journal.append(entries)
    t.announce(entries)
    return entries


def waiting(journal: AnnouncementJournal) -> list[str]:
    return [e.record.unique_id for e in journal.waiting()]


def test_an_upload_request_stays_journaled_until_its_receipt(parts: Any) -> None:
    journal, _, clock, _ = parts
    t = tracker(parts)
    announce(t, "a", "b")
    clock.now += 31  # the inference messages settled
    t.tick()
    assert waiting(journal) == ["a", "b"]  # no receipt yet
    t.on_receipts(receipt("a"))
    t.tick()
    assert waiting(journal) == ["b"]
    assert t.unconfirmed() == {"announcements": 1, "receipts": 1, "resent": 0}


def test_without_a_receipt_the_request_is_sent_again_with_growing_intervals(parts: Any) -> None:
    journal, hub, clock, metrics = parts
    t = tracker(parts, resend_s=60)
    announce(t, "a")
    clock.now += 59
    t.tick()
    assert hub.outputs("imageUpload") == ["a"]
    clock.now += 2
    t.tick()
    assert hub.outputs("imageUpload") == ["a", "a"]
    clock.now += 61  # the next wait is 120 s
    t.tick()
    assert hub.outputs("imageUpload") == ["a", "a"]
    clock.now += 60
    t.tick()
    assert hub.outputs("imageUpload") == ["a", "a", "a"]
    assert hub.outputs("inference") == ["a"]  # acknowledged: never sent again
    assert metrics.counters["messages_resent"] == 2
    t.on_receipts(receipt("a"))
    t.tick()
    assert waiting(journal) == []


def test_a_request_the_hub_has_not_taken_is_not_sent_again(parts: Any) -> None:
    _, hub, clock, _ = parts
    hub.auto_ack = False  # still in the hub's outbox: sending it again would only duplicate it
    t = tracker(parts, resend_s=60)
    announce(t, "a")
    clock.now += 3600
    t.tick()
    assert hub.outputs("imageUpload") == ["a"]


def test_a_lost_session_resends_what_the_hub_took_recently(parts: Any) -> None:
    journal, hub, clock, _ = parts
    t = tracker(parts, settle_s=30)
    announce(t, "old")
    t.on_receipts(receipt("old"))
    clock.now += 20
    announce(t, "new")
    t.on_receipts(receipt("new"))
    clock.now += 15  # "old" settled (35 s), "new" not (15 s)
    t.tick()
    assert waiting(journal) == ["new"]
    t.on_session_lost()
    assert hub.outputs("inference") == ["old", "new", "new"]
    clock.now += 31
    t.tick()
    assert waiting(journal) == []


def test_a_rejected_receipt_confirms_and_is_counted(parts: Any) -> None:
    journal, _, clock, metrics = parts
    t = tracker(parts)
    announce(t, "a")
    t.on_receipts(receipt("a", rejected="unsafe or missing blob_name"))
    clock.now += 31
    t.tick()
    assert waiting(journal) == []
    assert metrics.counters["uploads_refused"] == 1


def test_what_stays_unconfirmed_too_long_or_too_much_is_given_up(parts: Any) -> None:
    journal, _, clock, metrics = parts
    t = tracker(parts, ttl_s=600, max_tracked=2)
    announce(t, "a", "b", "c")  # over the limit: the oldest is given up
    assert waiting(journal) == ["b", "c"]
    clock.now += 601
    t.tick()
    assert waiting(journal) == []
    assert metrics.counters["announcements_given_up"] == 3


def test_at_shutdown_what_the_hub_took_is_forgotten_the_rest_waits(parts: Any) -> None:
    journal, hub, _, _ = parts
    t = tracker(parts, upload_receipts=False)
    announce(t, "a")
    hub.auto_ack = False
    announce(t, "b")
    assert t.in_flight() == 2
    t.finish()
    assert waiting(journal) == ["b"]


@pytest.mark.parametrize(
    "body",
    [b"{", b"[]", b'{"receipts": 1}', b'{"receipts": [1]}', b'{"receipts": [{"unique_id": 1}]}'],
)
def test_broken_receipt_messages_are_refused(body: bytes, parts: Any) -> None:
    with pytest.raises(ReceiptError):
        parse_receipts(HubMessage(body))
    t = tracker(parts)
    t.on_receipts(HubMessage(body))
    assert t.metrics.counters["receipts_rejected"] == 1


def test_over_the_limit_what_edgehub_took_is_forgotten_not_given_up(parts: Any) -> None:
    journal, _, _, metrics = parts
    t = tracker(parts, upload_receipts=False, max_tracked=2)
    announce(t, "a", "b", "c")  # a fast camera: more settling than the limit
    assert waiting(journal) == ["b", "c"]
    assert "announcements_given_up" not in metrics.counters
