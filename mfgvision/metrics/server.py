"""``/metrics`` of one process: the modules it runs, the hot-path families, the process itself.

``MFGVISION_METRICS_PORT`` (default 9464) is the port, ``0`` turns metrics off;
``MFGVISION_METRICS_HOST`` (default 127.0.0.1) the address bound. A scrape never fails because of a
module: a reader that raises loses that module's samples for that scrape, is counted in
``mfgvision_metrics_collect_errors_total`` and logged once per distinct error.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    make_wsgi_app,
)
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from mfgvision import __version__
from mfgvision.metrics.modules import Families, StatusReader
from mfgvision.metrics.source import FAMILIES
from mfgvision.runtime import Service
from mfgvision.web.server import WsgiService

log = logging.getLogger(__name__)

PORT_ENV = "MFGVISION_METRICS_PORT"
HOST_ENV = "MFGVISION_METRICS_HOST"
DEFAULT_PORT = 9464
DEFAULT_HOST = "127.0.0.1"
PATH = "/metrics"


@runtime_checkable
class Reporting(Protocol):
    """A module that reports its status (every module with a twin)."""

    def status(self) -> dict[str, Any]: ...


class Connection(Protocol):
    """A hub that says when its connection drops (the in-process one never does)."""

    def on_connection_change(self, handler: Callable[[bool], None]) -> None: ...


@runtime_checkable
class EdgeConnection(Protocol):
    """A hub connected to edgeHub: its state, its outbox and what it counted."""

    @property
    def connected(self) -> bool: ...

    @property
    def outbox_size(self) -> int: ...

    counters: dict[str, int]


@dataclass
class ModuleWatch:
    """One module served by a :class:`MetricsServer`: what it is, its hub, its status reader."""

    module: str
    kind: str
    hub: Connection | None = None
    status: Callable[[], Mapping[str, Any]] | None = None
    reader: StatusReader | None = None
    errors: int = field(default=0, init=False)
    disconnects: int = field(default=0, init=False)
    last_error: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.hub is not None:
            self.hub.on_connection_change(self._connection_changed)

    def _connection_changed(self, connected: bool) -> None:
        if not connected:
            self.disconnects += 1

    def read(self, out: Families) -> None:
        """This module's samples (may raise: the server catches)."""
        out.gauge(
            "mfgvision_module_info",
            "The module and its software version (1)",
            1,
            kind=self.kind,
            version=__version__,
        )
        hub = self.hub
        if hub is not None:
            out.counter(
                "mfgvision_hub_disconnects",
                "Times the connection to edgeHub dropped",
                self.disconnects,
            )
        if isinstance(hub, EdgeConnection):
            out.gauge("mfgvision_hub_connected", "1 while connected to edgeHub", int(hub.connected))
            out.gauge(
                "mfgvision_hub_outbox_messages",
                "Output messages waiting for edgeHub's acknowledgement",
                hub.outbox_size,
            )
            for event, value in dict(hub.counters).items():
                out.counter(
                    "mfgvision_hub_events",
                    "Hub events (sent, send_retries, dropped, renewed), by event",
                    value,
                    event=event,
                )
        if self.status is None or self.reader is None:
            return
        status = self.status()
        out.gauge(
            "mfgvision_module_state", "The module's state (1)", 1, state=status["status"]["state"]
        )
        self.reader(status, out)


class _Modules(Collector):
    """The watched modules' samples; one module's failure costs only its own samples."""

    def __init__(self) -> None:
        self.watches: list[ModuleWatch] = []
        self._lock = threading.Lock()

    def add(self, watch: ModuleWatch) -> None:
        with self._lock:
            self.watches.append(watch)

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        scrape = Families()
        with self._lock:  # one scrape at a time: the error counts stay exact
            for watch in self.watches:
                mine = Families(module=watch.module)
                try:
                    watch.read(mine)
                    scrape.merge(mine)
                except Exception as exc:
                    watch.errors += 1
                    error = f"{type(exc).__name__}: {exc}"[:300]
                    if error != watch.last_error:
                        log.error(
                            "module metrics not collected",
                            extra={"module_name": watch.module, "error": error},
                        )
                    watch.last_error = error
                else:
                    watch.last_error = None
                scrape.counter(
                    "mfgvision_metrics_collect_errors",
                    "Scrapes that could not read this module's metrics",
                    watch.errors,
                    module=watch.module,
                )
        return scrape.metrics()


class MetricsServer(WsgiService):
    """Serves ``/metrics`` for the modules of this process; ``port=0`` picks a free port."""

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
        super().__init__("metrics", host, port, threads=2)
        self.registry = CollectorRegistry()
        self._modules = _Modules()
        for collector in (*FAMILIES, PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(collector)
        self.registry.register(self._modules)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> MetricsServer | None:
        """The server ``MFGVISION_METRICS_PORT`` / ``_HOST`` ask for; None when the port is 0."""
        env = os.environ if env is None else env
        raw = env.get(PORT_ENV, "").strip() or str(DEFAULT_PORT)
        try:
            port = int(raw)
        except ValueError:
            raise ValueError(f"{PORT_ENV} must be a port number or 0 (off), not {raw!r}") from None
        if not 0 <= port <= 65535:
            raise ValueError(f"{PORT_ENV} must be a port number or 0 (off), not {raw!r}")
        if port == 0:
            return None
        return cls(env.get(HOST_ENV, "").strip() or DEFAULT_HOST, port)

    @property
    def metrics_url(self) -> str:
        return self.url.rstrip("/") + PATH

    def watch(self, watch: ModuleWatch) -> None:
        """Serve ``watch``'s module from the next scrape on."""
        self._modules.add(watch)

    def build_app(self) -> Any:
        metrics = make_wsgi_app(self.registry)

        def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if environ.get("PATH_INFO") == PATH:
                return metrics(environ, start_response)  # type: ignore[no-any-return]
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [f"metrics are at {PATH}\n".encode()]

        return app

    def start(self) -> None:
        """Start serving; a port that cannot be bound is logged and the module runs without."""
        try:
            super().start()
        except OSError as exc:
            log.error(
                "metrics not served",
                extra={"host": self.host, "port": self.port, "error": str(exc)[:300]},
            )
            return
        log.info("metrics served", extra={"url": self.metrics_url})


def served(
    server: MetricsServer | None, services: list[Service], *watches: ModuleWatch
) -> list[Service]:
    """``services`` after ``server`` (from :meth:`MetricsServer.from_env`), which serves
    ``watches``: first up, it answers while the modules start, and stops with them. ``services``
    alone when metrics are off (None)."""
    if server is None:
        return services
    for watch in watches:
        server.watch(watch)
    return [server, *services]
