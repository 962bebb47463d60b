"""S3 put_if_absent when the network loses the response: a real TCP proxy in front of the test endpoint
forwards the first conditional PUT to the server, then drops the connection before the client sees the answer.
The SDK retries, the retry gets 412, and the storage must recognise its own earlier write."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tsdb_lake.storage import open_storage


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get(b"content-length", b"0"))
    if b"expect" in headers and len(body) < length:
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    lines = [ln for ln in head.split(b"\r\n") if not ln.lower().startswith((b"connection:", b"expect:"))]
    return b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n" + body


class _DropFirstConditionalPut(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, upstream: tuple[str, int]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.upstream = upstream
        self.dropped = 0
        self.lock = threading.Lock()


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server: _DropFirstConditionalPut = self.server  # type: ignore[assignment]
        request = _read_request(self.request)
        if not request:
            return
        with socket.create_connection(server.upstream) as up:
            up.sendall(request)
            response = b""
            while chunk := up.recv(65536):
                response += chunk
        with server.lock:
            drop = request.startswith(b"PUT ") and b"if-none-match" in request.lower() and server.dropped == 0
            if drop:
                server.dropped += 1
        if drop:
            self.request.close()  # the PUT landed upstream; the client never hears about it
            return
        self.request.sendall(response)


@pytest.fixture
def lossy_proxy(s3_endpoint: str) -> Iterator[_DropFirstConditionalPut]:
    parts = urlsplit(s3_endpoint)
    server = _DropFirstConditionalPut((parts.hostname or "127.0.0.1", parts.port or 80))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.s3
def test_put_if_absent_survives_a_lost_response(
    s3_lake: tuple[str, dict[str, object]], lossy_proxy: _DropFirstConditionalPut
) -> None:
    uri, options = s3_lake
    host, port = lossy_proxy.server_address[:2]
    st = open_storage(uri, {**options, "endpoint_url": f"http://{host}:{port}"})
    assert st.put_if_absent("_catalog/log/00000000000000000000.json", b"mine") is True
    assert lossy_proxy.dropped == 1  # the fault really happened
    assert st.read_bytes("_catalog/log/00000000000000000000.json") == b"mine"
    # A genuine conflict through the same lossy path is still a conflict.
    lossy_proxy.dropped = 0
    assert st.put_if_absent("_catalog/log/00000000000000000000.json", b"other") is False
    assert st.read_bytes("_catalog/log/00000000000000000000.json") == b"mine"
