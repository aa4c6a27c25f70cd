"""Quiet reported properties: a module builds its whole reported document as often as it likes; only
what changed goes to the twin, and fast-changing figures only now and then.

A change is *significant* when a key appears or disappears, or a value other than a figure changes;
anything under ``config`` is always significant. Figures are numbers, the ``updated`` stamp and
``*_at`` timestamps: changes of figures alone are sent at most once per ``figures_every_s``
(one minute), and otherwise ride along with the next significant change. After a reconnection the
next report sends the whole document again.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from typing import Any

FIGURES_EVERY_S = 60.0
_ALWAYS_SIGNIFICANT = "config"


def _is_figure(key: str, value: Any, path: tuple[str, ...]) -> bool:
    if path[:1] == (_ALWAYS_SIGNIFICANT,) or key == _ALWAYS_SIGNIFICANT:
        return False
    if key == "updated" or key.endswith("_at"):
        return True
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def diff(
    old: dict[str, Any], new: dict[str, Any], path: tuple[str, ...] = ()
) -> tuple[dict[str, Any], bool]:
    """The merge-patch that turns ``old`` into ``new`` and whether it holds a significant change."""
    patch: dict[str, Any] = {}
    significant = False
    for key, value in new.items():
        if key not in old:
            patch[key] = value
            significant = True
        elif isinstance(value, dict) and isinstance(old[key], dict):
            inner, inner_significant = diff(old[key], value, (*path, key))
            if inner:
                patch[key] = inner
                significant = significant or inner_significant
        elif value != old[key]:
            patch[key] = value
            figure = _is_figure(key, value, path) and _is_figure(key, old[key], path)
            significant = significant or not figure
    for key in old.keys() - new.keys():
        patch[key] = None
        significant = True
    return patch, significant


class QuietReports:
    """What was last handed to the twin, and when figures were last sent (thread-safe)."""

    def __init__(
        self,
        figures_every_s: float = FIGURES_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.figures_every_s = figures_every_s
        self._clock = clock
        self._sent: dict[str, Any] | None = None
        self._figures_at = 0.0
        self._lock = threading.Lock()

    def patch_for(self, document: dict[str, Any]) -> dict[str, Any] | None:
        """The patch to send for ``document`` now, or None; what it returns counts as sent."""
        with self._lock:
            now = self._clock()
            if self._sent is None:
                patch, significant = dict(document), True
            else:
                patch, significant = diff(self._sent, document)
            if not patch:
                return None
            if not significant and now - self._figures_at < self.figures_every_s:
                return None
            self._sent, self._figures_at = copy.deepcopy(document), now
            return patch

    def forget(self) -> None:
        """Send the whole document with the next report (after a reconnection or a lost patch)."""
        with self._lock:
            self._sent = None
