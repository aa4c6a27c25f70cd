"""Class labels of a model folder: ``labels.json`` (JSON array) or ``labels.txt`` (one per line)."""

from __future__ import annotations

import json
from pathlib import Path

from mfgvision.inference.errors import ModelLoadError

LABEL_FILES = ("labels.json", "labels.txt")


def find_labels(model_dir: Path) -> Path:
    """The labels file in the version folder, else in the model folder one level up."""
    for folder in (model_dir, model_dir.parent):
        for name in LABEL_FILES:
            if (folder / name).is_file():
                return folder / name
    raise ModelLoadError(
        f"{model_dir}: no {' or '.join(LABEL_FILES)} in this folder or in {model_dir.parent}"
    )


def load_labels(model_dir: Path) -> list[str]:
    """The class names of the model in ``model_dir``, in class-index order."""
    path = find_labels(model_dir)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path}: cannot be read: {exc}") from exc
    if path.suffix == ".json":
        try:
            labels = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelLoadError(f"{path}: invalid JSON: {exc}") from exc
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            raise ModelLoadError(f"{path}: expected a JSON array of strings")
        labels = [x.strip() for x in labels]
    else:
        labels = [line.strip() for line in text.splitlines() if line.strip()]
    if not labels or not all(labels):
        raise ModelLoadError(f"{path}: no labels, or an empty label")
    return labels
