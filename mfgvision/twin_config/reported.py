"""What a module's reported properties say: whether it applied the latest desired version, and how
it runs (``status.state`` with its reasons), so that "Applied" never hides a failing module."""

from __future__ import annotations

from typing import Any

from mfgvision.store.status import STATE_LABELS, STATE_LEVELS

MAX_REASONS = 5
MAX_REASON_CHARS = 300


def _section(reported: dict[str, Any], key: str) -> dict[str, Any]:
    value = reported.get(key)
    return value if isinstance(value, dict) else {}


def module_state(reported: dict[str, Any]) -> dict[str, Any] | None:
    """The module's own state (``running``, ``degraded``, ``camera_error``...) with its label, level
    and reasons; None when it reports no state."""
    status = _section(reported, "status")
    state = status.get("state")
    if not isinstance(state, str) or not state:
        return None
    level = STATE_LEVELS.get(state, "warn")
    raw = status.get("reasons")
    reasons = [str(r) for r in raw if r] if isinstance(raw, list) else []
    camera = status.get("camera") if isinstance(status.get("camera"), dict) else {}
    error = status.get("last_error") or camera.get("error")
    if level != "ok" and error and str(error) not in reasons:
        reasons.append(str(error))
    return {
        "state": state,
        "label": STATE_LABELS.get(state, state.replace("_", " ").capitalize()),
        "level": level,
        "reasons": [r[:MAX_REASON_CHARS] for r in reasons[:MAX_REASONS]],
    }


def reported_summary(reported: dict[str, Any], desired_version: int | None) -> dict[str, Any]:
    """Whether the latest desired version is applied, refused or awaited, and the module's state."""
    config = _section(reported, "config")
    applied = config.get("applied_version")
    error = config.get("error") if isinstance(config.get("error"), dict) else None
    if error and (desired_version is None or error.get("version") == desired_version):
        state = ("error", f"Refused version {error.get('version')}: {error.get('message')}")
    elif applied is not None and desired_version is not None and applied >= desired_version:
        state = ("ok", f"Applied version {applied}")
    elif desired_version is not None and reported:
        state = ("warn", f"Waiting for version {desired_version} (applied: {applied})")
    else:
        state = ("warn", "Nothing reported yet")
    module = module_state(reported)
    return {
        "level": state[0],
        "text": state[1],
        "camera_state": module["state"] if module else None,
        "module": module,
        "updated": reported.get("updated"),
    }
