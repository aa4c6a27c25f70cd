"""A WSGI app as a service: waitress on its own thread, started and stopped cleanly."""

from __future__ import annotations

import threading
from typing import Any

from waitress import create_server
from waitress.server import BaseWSGIServer, MultiSocketServer

SERVER_THREADS = 4


class WsgiService:
    """Serves the app from ``build_app`` on ``host:port``; ``port=0`` picks a free port."""

    def __init__(self, name: str, host: str, port: int, threads: int = SERVER_THREADS) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.threads = threads
        self._server: BaseWSGIServer | MultiSocketServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def url(self) -> str:
        host = "localhost" if self.host in ("127.0.0.1", "0.0.0.0") else self.host
        return f"http://{host}:{self.port}/"

    def build_app(self) -> Any:
        """The WSGI app to serve; built on every start."""
        raise NotImplementedError

    def start(self) -> None:
        self._server = create_server(
            self.build_app(), host=self.host, port=self.port, threads=self.threads
        )
        if isinstance(self._server, BaseWSGIServer):
            self.port = int(self._server.effective_port)
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._serve, args=(self._server,), name=self.name, daemon=True
        )
        self._thread.start()

    def _serve(self, server: BaseWSGIServer | MultiSocketServer) -> None:
        """Run the server loop; the loop's select() may see its sockets closed by :meth:`stop`."""
        try:
            server.run()
        except (OSError, ValueError):
            if not self._stopping.is_set():
                raise

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is not None:
            self._stopping.set()
            server.task_dispatcher.shutdown(timeout=5)  # finish requests in flight
            server.close()
        if thread is not None:
            thread.join(timeout=2)
