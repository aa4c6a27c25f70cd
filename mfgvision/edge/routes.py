"""IoT Edge route strings: parse them and find where a module's output goes."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_ROUTE = re.compile(
    r"^\s*FROM\s+(?P<source>\S+)\s+(?:WHERE\s+(?P<cond>.+?)\s+)?INTO\s+(?P<sink>.+?)\s*$", re.I
)
_SOURCE = re.compile(
    r"^/messages(?:/\*|/modules/(?P<module>[^/*]+)(?:/\*|/outputs/\*|/outputs/(?P<output>[^/*]+))?)$"
)
_SINK = re.compile(
    r'^BrokeredEndpoint\(\s*"/modules/(?P<module>[^/"]+)/inputs/(?P<input>[^/"]+)"\s*\)$'
)

UPSTREAM = "$upstream"


class RouteError(ValueError):
    """A route string that does not follow IoT Edge's route syntax (or uses what we do not support)."""


@dataclass(frozen=True)
class Route:
    """One route: messages from ``source_module``/``source_output`` (None = any) go to a sink."""

    name: str
    source_module: str | None
    source_output: str | None
    sink_module: str | None
    sink_input: str | None

    @property
    def to_upstream(self) -> bool:
        return self.sink_module is None

    def matches(self, module: str, output: str) -> bool:
        return self.source_module in (None, module) and self.source_output in (None, output)


def parse_route(name: str, text: str) -> Route:
    """Parse ``FROM /messages/modules/M/outputs/O INTO BrokeredEndpoint("/modules/T/inputs/I")``."""
    m = _ROUTE.match(text)
    if not m:
        raise RouteError(f"route '{name}': expected 'FROM <source> INTO <sink>', got {text!r}")
    if m.group("cond"):
        raise RouteError(f"route '{name}': WHERE conditions are not supported by the local hub")
    src = _SOURCE.match(m.group("source"))
    if not src:
        raise RouteError(f"route '{name}': unknown source {m.group('source')!r}")
    sink_text = m.group("sink")
    if sink_text == UPSTREAM:
        return Route(name, src.group("module"), src.group("output"), None, None)
    sink = _SINK.match(sink_text)
    if not sink:
        raise RouteError(f"route '{name}': unknown sink {sink_text!r}")
    return Route(
        name, src.group("module"), src.group("output"), sink.group("module"), sink.group("input")
    )


def parse_routes(routes: dict[str, Any]) -> list[Route]:
    """Parse an ``$edgeHub`` routes section (plain strings or ``{"route": ...}`` objects)."""
    parsed = []
    for name, value in routes.items():
        text = value.get("route") if isinstance(value, dict) else value
        if not isinstance(text, str):
            raise RouteError(f"route '{name}': no route string")
        parsed.append(parse_route(name, text))
    return parsed
