"""A webhook receiver for the tests: a small threaded HTTP server on a loopback port that keeps every
request it gets, checks it as a receiver would (a ``check(headers, body)`` callable: 401 when it says
no), and answers with the statuses queued in ``answers`` (200 once they run out).  ``stop`` takes it
down (connections refused, as from a machine that is off) and ``start`` brings it back on the same port."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .ports import free_port


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    answer: int


class WebhookReceiver:
    def __init__(self, check: Callable[[Mapping[str, str], bytes], bool] | None = None) -> None:
        self.port = free_port()
        self.check = check
        self.answers: list[int] = []
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = dict(self.headers.items())
                with receiver._lock:
                    if receiver.check is not None and not receiver.check(headers, body):
                        answer = 401
                    else:
                        answer = receiver.answers.pop(0) if receiver.answers else 200
                    receiver.received.append(Received(headers, body, answer))
                self.send_response(answer)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join()
            self._server = self._thread = None
