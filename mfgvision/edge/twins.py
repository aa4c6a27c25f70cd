"""The module twin's documents as IoT Hub holds them: JSON merge-patch of desired and reported
properties (nested objects merge, ``null`` deletes a key, ``$`` keys are metadata)."""

from __future__ import annotations

import copy
from typing import Any


def merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """JSON merge-patch in place; keys starting with ``$`` are metadata and never merged."""
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def merge_patch(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """``current`` with a desired-properties patch applied as the hub applies it."""
    merged = copy.deepcopy(current)
    merge(merged, patch)
    return merged


def combine_patches(older: dict[str, Any], newer: dict[str, Any]) -> dict[str, Any]:
    """One patch with the effect of ``older`` then ``newer`` (``null`` kept: it deletes on the hub)."""
    combined = copy.deepcopy(older)
    for key, value in newer.items():
        if isinstance(value, dict) and isinstance(combined.get(key), dict):
            combined[key] = combine_patches(combined[key], value)
        else:
            combined[key] = copy.deepcopy(value)
    return combined
