"""The reject gate: one verdict per triggered part, in trigger order; fail-safe at the deadline."""

from __future__ import annotations

from mfgvision.line_bridge.gate import RejectGate
from mfgvision.line_bridge.results import NG, OK, Inspection
from tests.line_bridge.conftest import inference_body


def result(trigger_id: str, labels: tuple[str, ...] = (), camera_id: str = "cam-1") -> Inspection:
    return Inspection.from_message(inference_body(camera_id, labels, trigger_id=trigger_id))


def test_verdicts_leave_in_the_order_of_the_triggers_whatever_order_results_come_in() -> None:
    published: list[Inspection] = []
    gate = RejectGate(published.append, NG)
    parts = [gate.open("cam-1", f"t{i}") for i in range(3)]
    assert gate.offer(result("t2", ("hole",)))
    assert gate.offer(result("t1"))
    assert published == [] and gate.waiting() == 1
    assert gate.offer(result("t0"))
    assert [(p.trigger_id, p.verdict) for p in published] == [("t0", OK), ("t1", OK), ("t2", NG)]
    assert all(p.verdict.done() for p in parts)
    assert gate.counters["parts"] == 3 and gate.waiting() == 0


def test_a_part_past_its_deadline_gets_the_fail_safe_and_its_late_result_is_no_new_part() -> None:
    published: list[Inspection] = []
    gate = RejectGate(published.append, OK)
    part = gate.open("cam-1", "t0", "line1", "top")
    gate.expire(part)
    assert [(p.trigger_id, p.verdict, p.fail_safe) for p in published] == [("t0", OK, True)]
    assert (published[0].location, published[0].position) == ("line1", "top")
    assert not gate.offer(result("t0", ("hole",)))
    assert len(published) == 1
    assert gate.counters["fail_safe"] == 1 and gate.counters["late"] == 1


def test_an_expired_part_behind_a_waiting_one_keeps_its_place_and_turns_late() -> None:
    published: list[Inspection] = []
    gate = RejectGate(published.append, NG)
    first, second = gate.open("cam-1", "t0"), gate.open("cam-1", "t1")
    gate.expire(second)
    assert published == []
    assert not gate.offer(result("t1"))
    assert gate.offer(result("t0"))
    assert [(p.trigger_id, p.fail_safe) for p in published] == [("t0", False), ("t1", True)]
    assert first.verdict.result().verdict == OK and gate.counters["late"] == 1


def test_cameras_do_not_wait_for_each_other_and_unknown_trigger_ids_are_counted() -> None:
    published: list[Inspection] = []
    gate = RejectGate(published.append, NG)
    gate.open("cam-1", "a0")
    gate.open("cam-2", "b0")
    assert gate.offer(result("b0", camera_id="cam-2"))
    assert [p.trigger_id for p in published] == ["b0"]
    assert not gate.offer(result("never-sent"))
    assert gate.counters["unknown_trigger"] == 1 and gate.waiting() == 1
