"""``BodyGuard`` on its own: the body limit holds while the body arrives, a stalled body gets 408."""

from __future__ import annotations

import asyncio
import json

import pytest

pytest.importorskip("fastapi")

from fcdd.serve.app import BodyGuard  # noqa: E402 - after the skip when the serve extra is missing


def reader_app(seen: list):
    """An app that reads the whole body like a form parser, then answers 200."""

    async def app(scope, receive, send):
        while True:
            message = await receive()
            seen.append(message)
            if message["type"] == "http.disconnect" or not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def run(messages, headers=(), max_bytes: int = 250, timeout_s: float = 5.0) -> tuple[list, list, int]:
    """Drive one request through a guarded reader; (messages the app saw, messages sent to the
    client, calls of the server's receive)."""
    seen, sent, calls = [], [], [0]
    guard = BodyGuard(reader_app(seen), max_bytes=max_bytes, timeout_s=timeout_s)
    pending = list(messages)

    async def receive():
        calls[0] += 1
        if not pending:
            await asyncio.sleep(3600)  # a client that stopped sending
        return pending.pop(0)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/predict", "headers": list(headers)}
    asyncio.run(guard(scope, receive, send))
    return seen, sent, calls[0]


def chunks(n: int, size: int = 100) -> list:
    return [{"type": "http.request", "body": bytes(size), "more_body": i < n - 1} for i in range(n)]


def test_chunked_body_is_refused_as_soon_as_it_passes_the_limit():
    seen, sent, calls = run(chunks(100))
    assert calls == 3  # 300 bytes read of 10 000: the rest is never asked for
    assert sent[0]["status"] == 413 and (b"connection", b"close") in sent[0]["headers"]
    assert "250 bytes" in json.loads(sent[1]["body"])["detail"]
    assert seen[-1]["type"] == "http.disconnect" and len(sent) == 2  # the app's own answer is dropped


def test_declared_length_over_the_limit_is_refused_before_reading():
    _, sent, calls = run(chunks(1), headers=[(b"content-length", b"100000")])
    assert calls == 0 and sent[0]["status"] == 413


def test_stalled_body_gets_408_and_a_complete_one_passes():
    _, sent, _ = run(chunks(2)[:1], timeout_s=0.1)  # half a body, then silence
    assert sent[0]["status"] == 408 and (b"connection", b"close") in sent[0]["headers"]
    seen, sent, _ = run(chunks(2))
    assert sent[0]["status"] == 200 and sum(len(m["body"]) for m in seen) == 200
