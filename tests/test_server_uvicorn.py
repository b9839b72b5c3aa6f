"""A real uvicorn on 127.0.0.1, spoken to over HTTP with httpx: the app as deployed,
including a streamed (chunked) oversized body and concurrent requests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from test_server import roomy

from autoreply.app import create_app
from autoreply.encoder import HashingEncoder
from autoreply.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def base_url(settings: Settings) -> Iterator[str]:
    app = create_app(roomy(settings, max_body_bytes=4096), encoder=HashingEncoder())
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def test_real_server_over_http(base_url: str) -> None:
    """Messages, idempotent repeats, readiness, metrics and limits over a real socket."""
    with httpx.Client(base_url=base_url, timeout=10) as client:
        assert client.get("/readyz").json()["status"] == "ready"
        body = {"text": "如何退款", "user_id": "u1", "message_id": "x-1"}
        first = client.post("/v1/messages", json=body, headers={"X-Request-ID": "req-1"})
        assert first.status_code == 200 and first.json()["entry_id"] == "refund"
        assert first.headers["X-Request-ID"] == "req-1"
        again = client.post("/v1/messages", json=body).json()
        assert again["duplicate"] and again["message_id"] == first.json()["message_id"]

        def chunks() -> Iterator[bytes]:
            yield b'{"text": "'
            for _ in range(10):
                yield b"x" * 1000
            yield b'"}'

        streamed = client.post(
            "/v1/messages", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert streamed.status_code == 413
        assert streamed.json()["error"]["type"] == "too_large"
        metrics = client.get("/metrics").text
        assert 'route="/v1/messages",status="200"' in metrics


def test_real_server_handles_concurrent_clients(base_url: str) -> None:
    """Eight threads at once: every request answered, each conversation kept apart."""
    results: dict[int, str] = {}

    def ask(i: int) -> None:
        with httpx.Client(base_url=base_url, timeout=10) as client:
            reply = client.post("/v1/messages", json={"text": "password reset", "user_id": f"t{i}"})
            results[i] = reply.json()["conversation_id"]

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert results == {i: f"api:t{i}" for i in range(8)}
