"""What counts as a secret, and the one masking applied to everything the suite reports, logs or
writes to status files.

Secrets (passwords, storage keys, tokens) come from a module's environment, never from its twin.
A key is secret by its name (``db_password``, ``AccountKey``, ``api_key`` ...); a text carries one
by its shape: a password in a URI's user part (``rtsp://user:pw@host``), a ``name=value`` pair
with a secret name (connection strings, ``?pwd=``, ``;Password=``, ``&sig=``) or a bearer token.
``${NAME}`` references to environment variables are not secrets.

This module imports nothing of the package, so every floor can use it.
"""

from __future__ import annotations

import re
from typing import Any

MASK = "***"

_SECRET_NAME = re.compile(
    r"(password|passwd|pwd|secret|token|signature|^sig"
    r"|conn(ection)?[_\-]?str(ing)?|(access|account|api|private|shared)[_\-]?key|_key)$"
)
_ENV_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^\s/?#]*)@")
_PAIR = re.compile(
    r"(?P<name>(?<![A-Za-z0-9_\-])[A-Za-z][A-Za-z0-9_\-]*)(?P<eq>\s*=\s*)(?P<value>[^;&#\s]*)"
)
_QUOTED_PAIR = re.compile(
    r"(?P<q>['\"])(?P<name>[A-Za-z][A-Za-z0-9_\-]*)(?P=q)(?P<sep>\s*:\s*)(?P<vq>['\"])(?P<value>.*?)(?P=vq)"
)
_BEARER = re.compile(r"(?i)\b(?P<scheme>bearer)(?P<space>\s+)[A-Za-z0-9._~+/\-]{8,}=*")


def is_secret_key(name: str) -> bool:
    """True for a key whose value is a secret by its name (``db_password``, ``SharedAccessKey``)."""
    return _SECRET_NAME.search(name.lower()) is not None


def find_secret(text: str) -> str | None:
    """What kind of secret ``text`` carries (for an error message), or None; ``${NAME}`` references
    to environment variables do not count."""
    plain = _ENV_REFERENCE.sub("", text)
    for match in _USERINFO.finditer(plain):
        if match["userinfo"].partition(":")[2]:
            return "a password in a URI"
    for pattern in (_PAIR, _QUOTED_PAIR):
        for match in pattern.finditer(plain):
            if match["value"] and is_secret_key(match["name"]):
                return f"a secret value named {match['name']}"
    if _BEARER.search(plain):
        return "an authorization token"
    return None


def mask_text(text: str) -> str:
    """``text`` with URI user parts, secret ``name=value`` pairs and bearer tokens masked:
    ``rtsp://user:pw@host`` -> ``rtsp://***@host``, ``AccountKey=abc`` -> ``AccountKey=***``."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    text = _PAIR.sub(lambda m: _masked_pair(m, f"{m['name']}{m['eq']}{MASK}"), text)
    text = _QUOTED_PAIR.sub(
        lambda m: _masked_pair(m, f"{m['q']}{m['name']}{m['q']}{m['sep']}{m['vq']}{MASK}{m['vq']}"),
        text,
    )
    return _BEARER.sub(lambda m: f"{m['scheme']}{m['space']}{MASK}", text)


def _masked_pair(match: re.Match[str], masked: str) -> str:
    return masked if match["value"] and is_secret_key(match["name"]) else match[0]


def mask_secrets(value: Any) -> Any:
    """A copy of ``value`` (JSON-like: dicts, lists, strings, numbers) with secrets masked at any
    depth: the value of a secret key becomes ``***``, every text goes through :func:`mask_text`."""
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {
            key: MASK
            if isinstance(key, str) and is_secret_key(key) and item
            else mask_secrets(item)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [mask_secrets(item) for item in value]
    return value
