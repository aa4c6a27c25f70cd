"""The ModelRepo module as a service: seed once at start, then validate the volume periodically.

The inventory goes to reported properties (``models``) and to ``<data>/models-inventory.json`` for the
dashboard. The direct method ``run_now`` validates again at once (e.g. after a new version arrived).
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mfgvision import __version__
from mfgvision.edge.desired import desired_file
from mfgvision.edge.hub import Hub
from mfgvision.edge.periodic import ConfiguredModule
from mfgvision.model_repo.inventory import Inventory, seed
from mfgvision.runtime import REPO_ASSETS, Paths
from mfgvision.settings import ModelRepoSettings
from mfgvision.store.images import write_atomic

log = logging.getLogger(__name__)

INVENTORY_FILE = "models-inventory.json"


def shipped_assets() -> Path:
    """Assets baked into the image (``MFGVISION_SHIPPED_ASSETS``), else the repository's."""
    return Path(os.environ.get("MFGVISION_SHIPPED_ASSETS", REPO_ASSETS))


class ModelRepoService(ConfiguredModule):
    """Keeps the model volume seeded and its inventory current."""

    def __init__(self, hub: Hub, paths: Paths, shipped: Path | None = None) -> None:
        super().__init__(
            hub, "model-repo", ModelRepoSettings, desired_file(paths.data, hub.module_id)
        )
        self.paths = paths
        self.shipped = shipped or shipped_assets()
        self.inventory = Inventory(paths.models)
        self.models: dict[str, dict[str, Any]] = {}
        self.seeded: list[str] = []
        self.passes = 0

    @property
    def inventory_path(self) -> Path:
        return self.paths.data / INVENTORY_FILE

    def _connected(self, online: bool) -> None:
        super()._connected(online)
        self.seeded = seed(self.shipped / "models", self.paths.models)
        self.seeded += [
            f"samples/{s}"
            for s in seed(self.shipped / "samples", self.paths.assets / "samples", depth=1)
        ]
        if self.seeded:
            log.info("shipped assets seeded", extra={"seeded": self.seeded})

    def run_one(self) -> None:
        settings = self.settings.current
        assert isinstance(settings, ModelRepoSettings)
        try:
            self.models = self.inventory.refresh(settings.golden_tolerance)
            self.paths.data.mkdir(parents=True, exist_ok=True)
            body = {"updated": _now(), "models": self.models}
            write_atomic(self.inventory_path, (json.dumps(body, indent=2) + "\n").encode())
        except Exception:
            log.exception("model inventory failed")
        self.passes += 1
        log.info(
            "model inventory",
            extra={
                "versions": len(self.models),
                "invalid": sum(not m["valid"] for m in self.models.values()),
            },
        )
        self._report()

    def pause_s(self) -> float:
        settings = self.settings.current
        assert isinstance(settings, ModelRepoSettings)
        return settings.interval_s

    def status(self) -> dict[str, Any]:
        invalid = [k for k, m in self.models.items() if not m["valid"]]
        return {
            "software_version": __version__,
            "status": {
                "state": self._state if not invalid else "invalid_models",
                "passes": self.passes,
                "seeded": self.seeded,
                "invalid": invalid,
            },
            "models": self.models,
            "config": self.settings.report(),
            "updated": _now(),
        }


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()
