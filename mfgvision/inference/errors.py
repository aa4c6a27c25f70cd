"""Errors raised while loading a model."""

from __future__ import annotations


class ModelLoadError(Exception):
    """A model folder cannot be turned into a working model; the message says which file and why."""
