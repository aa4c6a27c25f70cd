"""Edit forms generated from a module's settings schema (pydantic ``model_json_schema()``).

The schema is the form's only source: each property's ``title`` is its label and its ``x-form``
hints (``settings.form``) give its section, place, unit, whether it is folded under "Advanced" and
the values of other settings it applies to (``shown_when``, e.g. machine-vision features only for
those camera types). A setting that does not apply to what the form submits keeps its value.

The form is only a way to type values: what is sent is validated with the very ``parse_settings``
the module runs, so the tool never sends desired properties the module would refuse for their
shape. What changes is computed on the effective settings (after defaults and legacy aliases), and
the patch carries only those keys.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mfgvision.edge.twins import merge_patch
from mfgvision.settings import CisSettings, ModuleSettings, SettingsError, parse_settings

SCHEMAS: dict[str, type[ModuleSettings]] = {"cis": CisSettings}
"""Settings model per module command; modules without one are shown read-only."""

MAX_TEXT = 2000
#: A setting edited as JSON (zones, rules, a connection) may be as long as IoT Hub lets the whole
#: desired document be.
MAX_JSON_TEXT = 32 * 1024
DEFAULT_GROUP = "Settings"
_UNPLACED = 10_000


@dataclass(frozen=True)
class FormField:
    """One input of the generated form."""

    name: str
    label: str
    kind: str  # "text", "number", "integer", "checkbox", "select", "list", "json"
    description: str | None
    default: Any
    required: bool
    options: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    pattern: str | None = None
    max_length: int | None = None
    nullable: bool = False
    group: str = DEFAULT_GROUP
    order: int = _UNPLACED
    unit: str | None = None
    advanced: bool = False
    shown_when: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def step(self) -> str:
        if self.kind == "integer":
            return "1"
        if self.maximum is not None and self.maximum <= 1:
            return "0.01"
        return "any"

    @property
    def hint(self) -> str:
        """Range and default in plain words, e.g. ``0–1, default 0.5``."""
        parts = [p for p in (self._range(), self._default()) if p]
        return ", ".join(parts)

    def applies(self, values: Mapping[str, Any]) -> bool:
        """Whether this setting applies when the form holds ``values`` (e.g. its camera type)."""
        return all(values.get(key) in allowed for key, allowed in self.shown_when.items())

    @property
    def shown_when_json(self) -> str:
        """``shown_when`` for the page's script."""
        return json.dumps({key: list(allowed) for key, allowed in self.shown_when.items()})

    def _range(self) -> str:
        low, high = self.minimum, self.maximum
        if low is not None and high is not None:
            return f"{_number(low)}{' to ' if low < 0 else '–'}{_number(high)}"
        if self.exclusive_minimum is not None and high is not None:
            return f"above {_number(self.exclusive_minimum)}, up to {_number(high)}"
        if low is not None:
            return f"at least {_number(low)}"
        if self.exclusive_minimum is not None:
            return f"above {_number(self.exclusive_minimum)}"
        if high is not None:
            return f"up to {_number(high)}"
        return ""

    def _default(self) -> str:
        value = self.default
        if value is None or value == {} or value == []:
            return ""
        if self.kind == "checkbox":
            return f"default {'on' if value else 'off'}"
        if isinstance(value, (int, float)):
            return f"default {_number(value)}"
        return f"default {value}"


@dataclass(frozen=True)
class FormSection:
    """A titled part of the form: its common settings, and the advanced ones folded below them."""

    title: str
    fields: list[FormField]
    advanced: list[FormField]


def _number(value: float) -> str:
    """``1``, ``0.45``, ``604,800``: whole numbers without ``.0``, thousands separated."""
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,}"


def form_fields(model: type[ModuleSettings]) -> list[FormField]:
    """The inputs for every property of ``model``'s JSON schema, in the order of their ``x-form``
    places (properties without one last, in declaration order)."""
    schema = model.model_json_schema()
    required = set(schema.get("required") or [])
    fields = []
    for index, (name, prop) in enumerate((schema.get("properties") or {}).items()):
        variants = prop.get("anyOf") or [prop]
        types = {v.get("type") for v in variants}
        base = next((v for v in variants if v.get("type") != "null"), prop)
        if "enum" in base:
            kind, options = "select", tuple(str(o) for o in base["enum"])
        elif "object" in types or "$ref" in base:  # a sub-object (a settings model of its own)
            kind, options = "json", ()
        elif "boolean" in types:
            kind, options = "checkbox", ()
        elif "array" in types:
            kind, options = "list", ()
        elif "integer" in types:
            kind, options = "integer", ()
        elif "number" in types:
            kind, options = "number", ()
        else:
            kind, options = "text", ()
        hints = prop.get("x-form") or {}
        fields.append(
            FormField(
                name=name,
                label=prop.get("title") or name.replace("_", " ").capitalize(),
                kind=kind,
                description=prop.get("description"),
                default=prop.get("default"),
                required=name in required,
                options=options,
                minimum=base.get("minimum"),
                maximum=base.get("maximum"),
                exclusive_minimum=base.get("exclusiveMinimum"),
                pattern=base.get("pattern"),
                max_length=base.get("maxLength"),
                nullable="null" in types,
                group=hints.get("group", DEFAULT_GROUP),
                order=int(hints.get("order", _UNPLACED + index)),
                unit=hints.get("unit"),
                advanced=bool(hints.get("advanced", False)),
                shown_when={
                    key: tuple(str(v) for v in allowed)
                    for key, allowed in (hints.get("shown_when") or {}).items()
                },
            )
        )
    return sorted(fields, key=lambda f: f.order)


def form_sections(fields: list[FormField]) -> list[FormSection]:
    """``fields`` (in form order) by section, each section where its first field comes."""
    groups: dict[str, list[FormField]] = {}
    for f in fields:
        groups.setdefault(f.group, []).append(f)
    return [
        FormSection(
            title,
            [f for f in members if not f.advanced],
            [f for f in members if f.advanced],
        )
        for title, members in groups.items()
    ]


def effective(model: type[ModuleSettings], desired: Mapping[str, Any]) -> dict[str, Any] | None:
    """The settings a module applies for ``desired`` (defaults filled in), or None if invalid."""
    try:
        return parse_settings(model, dict(desired)).model_dump()
    except SettingsError:
        return None


def form_values(
    fields: list[FormField], desired: Mapping[str, Any], current: dict[str, Any] | None
):
    """Initial values: the effective settings, else the raw desired values, else the defaults."""
    values = {}
    for f in fields:
        if current is not None:
            values[f.name] = current.get(f.name)
        else:
            values[f.name] = desired.get(f.name, f.default)
    return values


def read_form(
    fields: list[FormField], form: Mapping[str, str]
) -> tuple[dict[str, Any], dict[str, str]]:
    """Typed values from a submitted form, and per-field errors for values that are not even of
    the right type (range and pattern checks are left to the module's own validation).

    A setting that does not apply to the submitted values (a machine-vision feature of a folder
    camera) is left out whatever the form sent, so it keeps its current value."""
    values: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for f in fields:
        raw = form.get(f.name, "")
        if len(raw) > (MAX_JSON_TEXT if f.kind == "json" else MAX_TEXT):
            errors[f.name] = "too long"
            continue
        raw = raw.strip()
        if f.kind == "checkbox":
            values[f.name] = raw == "on"
        elif f.kind == "list":
            items = [item.strip() for item in raw.split(",") if item.strip()]
            values[f.name] = items or None
        elif f.kind in ("number", "integer"):
            if raw == "" and f.nullable:
                values[f.name] = None
                continue
            if raw == "":
                errors[f.name] = "a number is required"
                continue
            try:
                number = float(raw)
            except ValueError:
                errors[f.name] = "not a number"
                continue
            if not math.isfinite(number):
                errors[f.name] = "not a finite number"
            elif f.kind == "integer":
                if number != int(number):
                    errors[f.name] = "a whole number is required"
                else:
                    values[f.name] = int(number)
            else:
                values[f.name] = number
        elif f.kind == "json":
            if raw == "":
                values[f.name] = (
                    None if f.nullable else (f.default if f.default is not None else {})
                )
                continue
            try:
                parsed = json.loads(raw)
            except ValueError:
                errors[f.name] = "not valid JSON"
                continue
            if not isinstance(parsed, dict):
                errors[f.name] = "a JSON object is required"
            else:
                values[f.name] = parsed
        elif f.kind == "select":
            if raw not in f.options:
                errors[f.name] = f"choose one of {', '.join(f.options)}"
            else:
                values[f.name] = raw
        elif raw == "" and f.nullable:
            values[f.name] = None
        else:
            values[f.name] = raw
    inapplicable = {f.name for f in fields if not f.applies(values)}
    return (
        {k: v for k, v in values.items() if k not in inapplicable},
        {k: v for k, v in errors.items() if k not in inapplicable},
    )


@dataclass(frozen=True)
class Change:
    key: str
    old: Any
    new: Any


@dataclass(frozen=True)
class Proposal:
    """A validated change: the patch to send, what it changes, and the settings after it."""

    patch: dict[str, Any]
    changes: list[Change]
    settings: dict[str, Any]


def propose(
    model: type[ModuleSettings], desired: Mapping[str, Any], values: dict[str, Any]
) -> Proposal:
    """The patch that turns ``desired`` into ``values``; raises SettingsError as the module would.

    Only changed keys are sent. When the desired properties use the original system's upper-case
    keys (or are invalid now), the whole settings are written under their own names and the old
    keys are removed, so that no alias can shadow the new value.
    """
    current = {k: v for k, v in desired.items() if not k.startswith("$")}
    old = effective(model, current)
    names = set(model.model_fields)
    canonical = old is not None and set(current) <= names
    if canonical:
        assert old is not None
        patch = {k: v for k, v in values.items() if old.get(k) != v}
    else:
        patch = {k: v for k, v in values.items() if v is not None}
        patch.update({k: None for k in current if k not in names})
    # ``None`` in a merge patch deletes the key; a list field left empty means "use the default".
    for key, value in values.items():
        if value is None and key in patch:
            patch[key] = None
    merged = merge_patch(current, patch)
    settings = parse_settings(model, merged).model_dump()
    before = old or {}
    changes = []
    for k in model.model_fields:
        if before.get(k) == settings.get(k):
            continue
        if k == "cameras":
            changes += _camera_changes(before.get(k) or [], settings.get(k) or [])
        else:
            changes.append(Change(k, before.get(k), settings.get(k)))
    return Proposal(patch, changes, settings)


def _camera_changes(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[Change]:
    """What changes in a ``cameras`` list, entry by entry: ``cameras[1]`` for a camera added or
    removed, ``cameras[0].camera_uri`` for a key of a camera kept."""
    changes = []
    for index in range(max(len(old), len(new))):
        before = old[index] if index < len(old) else None
        after = new[index] if index < len(new) else None
        if before is None or after is None:
            changes.append(Change(f"cameras[{index}]", before, after))
            continue
        for key in sorted(set(before) | set(after)):
            if before.get(key) != after.get(key):
                changes.append(Change(f"cameras[{index}].{key}", before.get(key), after.get(key)))
    return changes
