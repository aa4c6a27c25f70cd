"""The cameras of a CIS module that runs several (its ``cameras`` list), as the twin tool edits them.

Each entry is one section of the form: its inputs are named ``cam<i>.<key>``, an input left empty is a
key the entry leaves out (the module's value applies, shown as the input's placeholder), and
``cam<i>.from`` says which entry of the desired list the section was (empty for a new camera) so
that a setting that does not apply to the camera's type keeps that entry's value. The list is read
whole: a merge patch replaces a list, so a change to any camera sends every entry.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mfgvision.settings import CAMERA_ENTRY_KEYS, MAX_CAMERAS
from mfgvision.twin_config.forms import FormField, read_form

COUNT = "camera_count"
ACTION = "camera_action"
_ID_LIMIT = 40


def entries_of(settings: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The entries of ``settings``'s ``cameras`` list (objects only; none for a one-camera module)."""
    cameras = (settings or {}).get("cameras")
    if not isinstance(cameras, list):
        return []
    return [dict(entry) for entry in cameras if isinstance(entry, dict)]


def entry_fields(fields: list[FormField]) -> list[FormField]:
    """The settings an entry of ``cameras`` may set, in form order."""
    return [f for f in fields if f.name in CAMERA_ENTRY_KEYS]


def input_name(index: int, key: str) -> str:
    """The form input of ``key`` in camera section ``index``."""
    return f"cam{index}.{key}"


def resolved(settings: Mapping[str, Any], entry: Mapping[str, Any]) -> dict[str, Any]:
    """One camera's settings: its entry over the module's own keys."""
    return {**{k: v for k, v in settings.items() if k != "cameras"}, **entry}


def fresh_camera_id(entries: list[dict[str, Any]], base: str) -> str:
    """A camera id no entry has: ``base`` with the first free number (``line1-top-2``)."""
    taken = {str(entry.get("camera_id")) for entry in entries}
    number = 2
    while True:
        suffix = f"-{number}"
        candidate = base[: _ID_LIMIT - len(suffix)] + suffix
        if candidate not in taken:
            return candidate
        number += 1


def with_camera_added(
    entries: list[dict[str, Any]], module: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """``entries`` plus a new camera of the first camera's type under a fresh id; a module that ran
    one camera of its own keys keeps it as the first entry (with its id, everything else the
    module's)."""
    out = [dict(e) for e in entries] or [{"camera_id": str(module.get("camera_id") or "camera1")}]
    first = resolved(module, out[0])
    base = str(first.get("camera_id") or "camera")
    new = {"camera_id": fresh_camera_id(out, base), "camera_type": first.get("camera_type")}
    return [*out, {k: v for k, v in new.items() if v is not None}]


def display(value: Any, field: FormField) -> str:
    """A value as an input of a camera section shows it ('' for a key the entry leaves out)."""
    if value is None:
        return ""
    if field.kind == "checkbox":
        return "on" if value else "off"
    if field.kind == "json":
        return json.dumps(value, separators=(", ", ": "))
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _as_sent(raw: str, field: FormField) -> str:
    """A camera input's text as ``read_form`` takes it: a box is ticked ("on") or not ("")."""
    if field.kind == "checkbox":
        return "on" if raw == "on" else ""
    return raw


def read_cameras(
    fields: list[FormField],
    form: Mapping[str, str],
    module: Mapping[str, Any],
    desired_entries: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[int | None], dict[str, str]]:
    """The entries the camera sections of ``form`` hold, where each came from (its index in
    ``desired_entries``, None for a new camera), and errors by input name. ``module``: the module's
    values, for the settings an entry leaves out."""
    try:
        count = min(int(form.get(COUNT, "0")), MAX_CAMERAS)
    except ValueError:
        count = 0
    own = entry_fields(fields)
    entries: list[dict[str, Any]] = []
    origins: list[int | None] = []
    errors: dict[str, str] = {}
    for index in range(count):
        origin_text = form.get(input_name(index, "from"), "")
        origin = int(origin_text) if origin_text.isdigit() else None
        before = (
            desired_entries[origin] if origin is not None and origin < len(desired_entries) else {}
        )
        raw = {f.name: form.get(input_name(index, f.name), "").strip() for f in own}
        context = {"camera_type": raw.get("camera_type") or str(module.get("camera_type", ""))}
        given = [f for f in own if raw[f.name] and f.applies(context)]
        sent = {f.name: _as_sent(raw[f.name], f) for f in given}
        types = [f for f in own if f.name == "camera_type" and f not in given]
        values, wrong = read_form([*given, *types], {**sent, **context, **sent})
        entry = {k: v for k, v in values.items() if k in sent}
        # A setting that does not apply to this camera's type keeps the entry's value.
        entry.update(
            {f.name: before[f.name] for f in own if not f.applies(context) and f.name in before}
        )
        errors.update({input_name(index, k): v for k, v in wrong.items()})
        entries.append(entry)
        origins.append(origin)
    return entries, origins, errors
