"""A module's desired state: the twin's desired document as IoT Hub holds it, validated into the
settings in force.

* The document follows the twin: a patch is merged into it (JSON merge-patch, ``null`` deletes a
  key), a whole desired section (at start, after a reconnection) replaces it.
* The whole document is validated every time. A valid one is applied and becomes the last good
  settings, persisted (``<data>/state/<module>.desired.json``) so that a restart starts with them.
* An invalid one is never applied: the last good settings keep serving (on a first start without
  any, the document's valid keys with defaults for the invalid ones), and ``error`` names each bad
  key and why until the document is valid again.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mfgvision.edge.twins import merge_patch
from mfgvision.settings import ModuleSettings, SettingsError, parse_settings
from mfgvision.store.images import write_atomic

if TYPE_CHECKING:
    from mfgvision.edge.hub import Hub

log = logging.getLogger(__name__)

STATE_FOLDER = "state"


def desired_file(data: Path, module_id: str) -> Path:
    """Where a module keeps its last good desired document: ``<data>/state/<module>.desired.json``."""
    return data / STATE_FOLDER / f"{module_id}.desired.json"


class DesiredSettings:
    """One module's desired document and the settings in force (thread-safe)."""

    def __init__(self, model: type[ModuleSettings], state_file: Path | None = None) -> None:
        self.model = model
        self.state_file = state_file
        self.document: dict[str, Any] = {}
        self.version: int | None = None
        self.current: ModuleSettings = parse_settings(model, {})
        self.applied_version: int | None = None
        self.error: dict[str, Any] | None = None
        self._has_good = False
        self._lock = threading.Lock()
        self._load()

    def apply(self, desired: dict[str, Any], full: bool) -> bool:
        """Take a whole desired section (``full``) or a patch; True when the document is valid."""
        with self._lock:
            if full:
                self.document = {k: v for k, v in desired.items() if not k.startswith("$")}
            else:
                self.document = merge_patch(self.document, desired)
            version = desired.get("$version")
            self.version = version if isinstance(version, int) else self.version
            try:
                settings = parse_settings(self.model, self.document)
            except SettingsError as exc:
                self._refuse(exc)
                return False
            self.current, self.applied_version, self.error = settings, self.version, None
            self._has_good = True
            self._save()
            return True

    def starting_point(self, hub: Hub, online: bool) -> dict[str, Any]:
        """The desired section a module starts from: the twin's when its hub is connected, else the
        last good document an earlier run saved (the hub hands the twin's over once connected)."""
        if online:
            return hub.get_twin().get("desired", {})
        with self._lock:
            log.warning("starting on the last good settings saved", extra={"version": self.version})
            return {**self.document, "$version": self.version}

    def report(self) -> dict[str, Any]:
        """The ``config`` section of reported properties."""
        with self._lock:
            return {
                "applied_version": self.applied_version,
                "settings": self.current.model_dump(),
                "error": self.error,
                "warnings": self.current.warnings,
            }

    def _refuse(self, exc: SettingsError) -> None:
        self.error = {"version": self.version, "message": str(exc), "keys": exc.problems}
        if not self._has_good:
            self.current = self._without(exc.problems)
        log.error(
            "desired properties refused",
            extra={
                "version": self.version,
                "keys": sorted(exc.problems),
                "error": str(exc),
                "serving": "last good" if self._has_good else "defaults for the bad keys",
            },
        )

    def _without(self, bad: dict[str, str]) -> ModuleSettings:
        """The document without its bad keys (defaults in their place); all defaults if even that
        is refused."""
        rest = {k: v for k, v in self.document.items() if k not in bad}
        try:
            return parse_settings(self.model, rest)
        except SettingsError:
            return parse_settings(self.model, {})

    def _load(self) -> None:
        """Start from the last good document of a previous run, if there is a usable one."""
        if self.state_file is None or not self.state_file.is_file():
            return
        try:
            saved = json.loads(self.state_file.read_text(encoding="utf-8"))
            self.current = parse_settings(self.model, saved["desired"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning(
                "last good settings not usable, starting from defaults",
                extra={"file": str(self.state_file), "error": str(exc)},
            )
            return
        self.document = dict(saved["desired"])
        version = saved.get("version")
        self.applied_version = self.version = version if isinstance(version, int) else None
        self._has_good = True
        log.info("last good settings loaded", extra={"version": self.applied_version})

    def _save(self) -> None:
        if self.state_file is None:
            return
        body = {"version": self.applied_version, "desired": self.document}
        try:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.state_file, (json.dumps(body, indent=1) + "\n").encode())
        except OSError as exc:
            log.warning(
                "last good settings not saved",
                extra={"file": str(self.state_file), "error": str(exc)},
            )
