"""A module's desired state: the twin's desired document, validated into its settings."""

from __future__ import annotations

from typing import Any

from mfgvision.edge.twins import merge_patch
from mfgvision.settings import ModuleSettings, SettingsError, parse_settings


class DesiredSettings:
    """A module's settings from its twin: the whole desired state validated on every patch.

    A patch that fails validation is refused and the last good settings stay in force; ``error`` says
    why (for reported properties).
    """

    def __init__(self, model: type[ModuleSettings]) -> None:
        self.model = model
        self.current: ModuleSettings = parse_settings(model, {})
        self.version: int | None = None
        self.error: dict[str, Any] | None = None
        self._desired: dict[str, Any] = {}

    def apply(self, desired: dict[str, Any], replace: bool) -> bool:
        """Apply a whole desired section (``replace``) or a patch; False when refused."""
        version = desired.get("$version")
        merged = desired_state(self._desired, desired, replace)
        try:
            settings = parse_settings(self.model, merged)
        except SettingsError as exc:
            self.error = {"version": version, "message": str(exc)}
            return False
        self.current, self._desired, self.version, self.error = settings, merged, version, None
        return True

    def report(self) -> dict[str, Any]:
        """The ``config`` section of reported properties."""
        return {
            "applied_version": self.version,
            "settings": self.current.model_dump(),
            "error": self.error,
        }


def desired_state(
    current: dict[str, Any], desired: dict[str, Any], replace: bool
) -> dict[str, Any]:
    """The desired state after a whole desired section (``replace``, ``$`` keys dropped) or a
    patch merged into ``current``."""
    if replace:
        return {k: v for k, v in desired.items() if not k.startswith("$")}
    return merge_patch(current, desired)
