"""The reject gate: exactly one verdict per triggered part, in the order of the triggers.

Each trigger opens a part with a deadline. The part's verdict is its inspection (the ``inference``
message carrying its ``trigger_id``) or, once the deadline has passed, the fail-safe verdict. Verdicts
leave per camera in the order of the triggers: a result that arrives while an earlier part still waits
is held until that part has its verdict. A result for a part that already got its fail-safe is late:
counted, never passed on as a new part's verdict. A ``trigger_id`` the gate never opened (a trigger
sent before the bridge restarted) is counted as unknown and not passed on either.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timezone

from mfgvision.line_bridge.results import Inspection

#: Trigger ids remembered after their part got its verdict, to recognise late results.
REMEMBERED = 10000


@dataclass
class Part:
    """One triggered part waiting for its verdict."""

    camera_id: str
    trigger_id: str
    location: str
    position: str
    verdict: Future[Inspection] = field(default_factory=Future)


class RejectGate:
    """Matches results to triggered parts and passes each part's verdict on, in order."""

    def __init__(self, publish: Callable[[Inspection], None], fail_safe: str) -> None:
        self.publish = publish
        self.fail_safe = fail_safe
        self.counters = {"parts": 0, "fail_safe": 0, "late": 0, "unknown_trigger": 0}
        self._parts: dict[str, deque[Part]] = {}
        self._by_id: dict[str, Part] = {}
        self._done: OrderedDict[str, bool] = OrderedDict()
        self._lock = threading.Lock()

    def open(self, camera_id: str, trigger_id: str, location: str = "", position: str = "") -> Part:
        """A new part of ``camera_id``, waiting for the result of ``trigger_id``."""
        part = Part(camera_id, trigger_id, location, position)
        with self._lock:
            self._parts.setdefault(camera_id, deque()).append(part)
            self._by_id[trigger_id] = part
        return part

    def offer(self, inspection: Inspection) -> bool:
        """Take a result carrying a ``trigger_id``; False when it is no waiting part's (late or
        unknown, counted)."""
        assert inspection.trigger_id is not None
        with self._lock:
            part = self._by_id.get(inspection.trigger_id)
            if part is None or part.verdict.done():
                late = part is not None or inspection.trigger_id in self._done
                self.counters["late" if late else "unknown_trigger"] += 1
                return False
            part.verdict.set_result(inspection)
            self._pass_on(part.camera_id)
        return True

    def expire(self, part: Part) -> None:
        """The part's deadline has passed: it gets the fail-safe unless its result came first."""
        with self._lock:
            if not part.verdict.done():
                part.verdict.set_result(self._fail_safe(part))
                self.counters["fail_safe"] += 1
            self._pass_on(part.camera_id)

    def waiting(self) -> int:
        """Parts still without a verdict."""
        with self._lock:
            return sum(1 for p in self._by_id.values() if not p.verdict.done())

    def _fail_safe(self, part: Part) -> Inspection:
        return Inspection(
            camera_id=part.camera_id,
            location=part.location,
            position=part.position,
            unique_id=f"fail-safe-{part.trigger_id}",
            verdict=self.fail_safe,
            defects=(),
            created=datetime.now(timezone.utc),
            trigger_id=part.trigger_id,
            fail_safe=True,
        )

    def _pass_on(self, camera_id: str) -> None:
        """Pass on the verdicts of the camera's leading parts that have one, in order (under the
        lock, so two threads never pass verdicts on out of order; ``publish`` never blocks)."""
        queue = self._parts.get(camera_id)
        while queue and queue[0].verdict.done():
            part = queue.popleft()
            del self._by_id[part.trigger_id]
            self._done[part.trigger_id] = True
            while len(self._done) > REMEMBERED:
                self._done.popitem(last=False)
            self.counters["parts"] += 1
            self.publish(part.verdict.result())
