"""A scripted OpenAI-compatible server on 127.0.0.1 for failure-mode tests of the judge client.

This is the process boundary we do not own (lmdeploy/vLLM); the real protocol is also
tested against vLLM in test_judge_vllm.py. Each chat request is answered by ``script``:
a function from the request number and JSON body to a :class:`Reply`. A reply can carry
extra headers (``Retry-After``, a lying ``Content-Encoding``) or bytes written to the socket
instead of an HTTP response (protocol garbage).
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Reply:
    status: int = 200
    content: str | None = "A"  # the assistant message; None sends ``raw`` instead
    raw: str | bytes = ""
    delay_s: float = 0.0
    headers: tuple[tuple[str, str], ...] = ()  # sent after Content-Type/Content-Length
    wire: bytes | None = None  # sent verbatim instead of a response, then the connection closes


def chat_body(content: str) -> str:
    return json.dumps({"id": "x", "object": "chat.completion", "model": "scripted",
                       "choices": [{"index": 0, "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": content}}]})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default backlog of 5 resets connections at 64 in flight

    def handle_error(self, request: object, client_address: object) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):  # a client that abandoned its reply
            return
        super().handle_error(request, client_address)


class ScriptedOpenAI:
    def __init__(self, script: Callable[[int, dict], Reply], model: str = "scripted-judge",
                 models_reply: Reply | None = None) -> None:
        self.script = script
        self.model = model
        self.models_reply = models_reply  # replaces the GET /v1/models answer when given
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> ScriptedOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _send(self, status: int, body: str | bytes, headers: tuple[tuple[str, str], ...] = ()) -> None:
                data = body.encode() if isinstance(body, str) else body
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def _reply(self, reply: Reply) -> None:
                if reply.wire is not None:
                    self.wfile.write(reply.wire)
                    self.close_connection = True
                    return
                body = chat_body(reply.content) if reply.content is not None else reply.raw
                self._send(reply.status, body, reply.headers)

            def do_GET(self) -> None:
                if self.path == "/v1/models" and server.models_reply is not None:
                    self._reply(server.models_reply)
                elif self.path == "/v1/models":
                    self._send(200, json.dumps({"object": "list", "data": [{"id": server.model}]}))
                else:
                    self._send(404, "{}")

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server._lock:
                    number = len(server.requests)
                    server.requests.append(body)
                reply = server.script(number, body)
                time.sleep(reply.delay_s)
                # The client may have given up already (timeout test).
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self._reply(reply)

        return Handler


def dead_host() -> str:
    """A 127.0.0.1 port with nothing listening (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"
