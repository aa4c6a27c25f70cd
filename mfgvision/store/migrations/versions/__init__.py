"""Revisions of the edge database, oldest first: ``0001_initial``, ``0002_...``."""
