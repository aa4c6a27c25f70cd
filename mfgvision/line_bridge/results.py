"""What the line bridge passes to the plant's systems: inspections, each camera's state, and the
contract every connection to the line (OPC UA server, Modbus, MQTT, OPC UA client) keeps."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from mfgvision.store.records import NG, OK, verdict_of


class InspectionError(ValueError):
    """An ``inference`` message that does not describe an inspection."""


@dataclass(frozen=True)
class Inspection:
    """One part's result as the line sees it."""

    camera_id: str
    location: str
    position: str
    unique_id: str
    verdict: str  # OK or NG
    defects: tuple[str, ...]
    created: datetime
    trigger_id: str | None = None
    #: True for the fail-safe verdict given when no result arrived before the deadline.
    fail_safe: bool = False
    #: Names of the camera's rules that fired, in the order of its rules (each once).
    rules: tuple[str, ...] = ()

    @classmethod
    def from_message(cls, body: Any) -> Inspection:
        """An inspection from the CIS's ``inference`` message body; InspectionError if it is not one.

        The verdict is the message's; a message without one (from a CIS before verdicts were
        sent) gets the verdict without rules, NG when anything was detected."""
        if not isinstance(body, dict):
            raise InspectionError("body is not a JSON object")
        try:
            objects = body.get("detected_objects") or []
            defects = tuple(sorted({str(d["label"]) for d in objects}))
            rules = tuple(dict.fromkeys(str(f["rule"]) for f in body.get("rules") or []))
            created = datetime.fromisoformat(str(body["created"]).replace("Z", "+00:00"))
            camera_id, unique_id = body["camera_id"], body["unique_id"]
        except (KeyError, TypeError, ValueError) as exc:
            raise InspectionError(f"not an inference message: {exc}") from None
        if not isinstance(camera_id, str) or not isinstance(unique_id, str):
            raise InspectionError("camera_id and unique_id must be strings")
        trigger = body.get("trigger_id")
        verdict = body.get("verdict")
        if verdict not in (OK, NG, None):
            raise InspectionError(f"verdict must be OK or NG, not {str(verdict)[:20]!r}")
        return cls(
            camera_id=camera_id,
            location=str(body.get("location") or ""),
            position=str(body.get("position") or ""),
            unique_id=unique_id,
            verdict=verdict or verdict_of(defects),
            defects=defects,
            created=created,
            trigger_id=trigger if isinstance(trigger, str) else None,
            rules=rules,
        )


@dataclass
class CameraState:
    """What the line knows of one camera: its last verdict and counters since the bridge started."""

    camera_id: str
    verdict: str = ""  # "" before the first result
    inspection_id: str = ""
    defects: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    inspections: int = 0
    ng_count: int = 0
    state: str = "unknown"
    updated_at: datetime | None = None
    location: str = ""
    position: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def record(self, inspection: Inspection) -> None:
        """Count ``inspection`` and make it the camera's latest."""
        self.verdict = inspection.verdict
        self.inspection_id = inspection.unique_id
        self.defects = inspection.defects
        self.rules = inspection.rules
        self.inspections += 1
        self.ng_count += inspection.verdict == NG
        self.updated_at = inspection.created
        self.location, self.position = inspection.location, inspection.position


#: Make ``camera_id`` inspect now and wait at most ``timeout_s`` for that inspection; raises
#: TimeoutError when none arrives (the bridge then applies the fail-safe).
Trigger = Callable[[str, float], Inspection]


class Sink(Protocol):
    """One connection to the line. ``publish`` never blocks: a sink queues (bounded) and delivers
    on a thread of its own, reconnecting with backoff, and counts what it could not deliver."""

    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def publish(self, state: CameraState, inspection: Inspection | None) -> None:
        """Pass on a camera's state, with the inspection that changed it (None: only the module
        state changed)."""

    def status(self) -> dict[str, Any]: ...
