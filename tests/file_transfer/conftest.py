"""The Azurite fixture for the transfer tests."""

from tests.services import azurite  # noqa: F401  (fixture)
