"""Module twins kept in a local JSON file, as the edgeHub stand-in serves them.

Each twin has ``desired`` and ``reported`` sections, each with its own ``$version``. Desired properties
start from the deployment manifest; a manifest whose twin section changed replaces them (as a new
deployment would), and ``mfgvision edgehub patch`` merges patches into them. Reported patches from
the modules merge into ``reported``. Merging follows JSON merge-patch: nested objects merge and
``null`` deletes a key.
"""

from __future__ import annotations

import copy
import json
import os
import threading
from pathlib import Path
from typing import Any

from mfgvision.edge.twins import merge


class TwinError(ValueError):
    """A twin operation that cannot be done (unknown module, a patch that is not an object)."""


class TwinStore:
    """Twins of every module, persisted to ``path`` after each change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._twins: dict[str, dict[str, Any]] = {}
        if path.is_file():
            data = json.loads(path.read_text(encoding="utf-8") or "{}")
            self._twins = dict(data.get("modules") or {})

    def modules(self) -> list[str]:
        with self._lock:
            return sorted(self._twins)

    def deploy(self, module: str, desired: dict[str, Any]) -> bool:
        """Make sure ``module`` has a twin; a new or changed manifest section replaces ``desired``.

        Returns True when the desired properties were replaced.
        """
        desired = {k: v for k, v in desired.items() if not k.startswith("$")}
        with self._lock:
            twin = self._twins.get(module)
            if twin is not None and twin.get("deployed") == desired:
                return False
            if twin is None:
                twin = {"desired": {"$version": 0}, "reported": {"$version": 1}}
                self._twins[module] = twin
            version = int(twin["desired"].get("$version", 0)) + 1
            twin["desired"] = {**copy.deepcopy(desired), "$version": version}
            twin["deployed"] = copy.deepcopy(desired)
            self._save()
            return True

    def twin(self, module: str) -> dict[str, Any]:
        """``{"desired": {..., "$version"}, "reported": {..., "$version"}}``."""
        with self._lock:
            twin = self._get(module)
            return {
                "desired": copy.deepcopy(twin["desired"]),
                "reported": copy.deepcopy(twin["reported"]),
            }

    def patch_desired(self, module: str, patch: Any) -> tuple[int, dict[str, Any]]:
        """Merge a desired patch; returns the new ``$version`` and the patch as modules receive it."""
        if not isinstance(patch, dict):
            raise TwinError("a desired-properties patch must be a JSON object")
        with self._lock:
            twin = self._get(module)
            merge(twin["desired"], patch)
            version = int(twin["desired"].get("$version", 0)) + 1
            twin["desired"]["$version"] = version
            self._save()
        body = {k: v for k, v in patch.items() if not k.startswith("$")}
        return version, {**body, "$version": version}

    def patch_reported(self, module: str, patch: Any) -> int:
        """Merge a reported patch from the module; returns the new reported ``$version``."""
        if not isinstance(patch, dict):
            raise TwinError("a reported-properties patch must be a JSON object")
        with self._lock:
            twin = self._get(module)
            merge(twin["reported"], patch)
            version = int(twin["reported"].get("$version", 1)) + 1
            twin["reported"]["$version"] = version
            self._save()
            return version

    def _get(self, module: str) -> dict[str, Any]:
        twin = self._twins.get(module)
        if twin is None:
            raise TwinError(f"no module '{module}' (known: {', '.join(sorted(self._twins))})")
        return twin

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps({"modules": self._twins}, indent=1), encoding="utf-8")
        os.replace(tmp, self.path)
