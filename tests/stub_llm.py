"""A small OpenAI-compatible chat-completions server that streams its answer slowly (for tests).

The answer is deterministic: ``You said: <last user message>.`` followed by ``STUB_LLM_SENTENCES``
more sentences (a "long story" in the message asks for 40), one word per SSE chunk, every
``--delay-ms``. ``GET /requests`` returns the message lists it was sent. With ``--api-key``, requests
need that bearer token. Run: ``python -m tests.stub_llm --port N``; stop it by its PID.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

REQUESTS: list[list[dict[str, Any]]] = []


def answer_for(messages: list[dict[str, Any]], sentences: int) -> str:
    user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    if "long story" in user.lower():
        sentences = 40
    extra = " ".join(f"This is sentence number {i} of the answer." for i in range(1, sentences + 1))
    return f"You said: {user.strip().rstrip('.?!')}. {extra}".strip()


def build_app(delay_s: float, sentences: int, api_key: str | None) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    async def completions(request: Request) -> Response:
        if api_key and request.headers.get("authorization") != f"Bearer {api_key}":
            return JSONResponse({"error": {"message": "bad key", "type": "auth"}}, status_code=401)
        body = await request.json()
        REQUESTS.append(body["messages"])
        text = answer_for(body["messages"], sentences)

        async def stream() -> AsyncIterator[bytes]:
            words = text.split(" ")
            for i, word in enumerate(words):
                await asyncio.sleep(delay_s)
                piece = word + (" " if i < len(words) - 1 else "")
                chunk = {
                    "id": "chatcmpl-stub",
                    "object": "chat.completion.chunk",
                    "model": body.get("model", "stub"),
                    "choices": [{"index": 0, "delta": {"content": piece}}],
                }
                yield f"data: {json.dumps(chunk)}\n\n".encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")

    async def requests(request: Request) -> Response:
        return JSONResponse(REQUESTS)

    return Starlette(
        routes=[
            Route("/v1/chat/completions", completions, methods=["POST"]),
            Route("/requests", requests),
        ]
    )


@dataclass
class StubLLM:
    url: str
    process: subprocess.Popen[bytes]

    def requests(self) -> list[list[dict[str, Any]]]:
        data: list[list[dict[str, Any]]] = httpx.get(self.url.removesuffix("/v1") + "/requests").json()
        return data

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_stub_llm(
    log: Path, *, delay_ms: int = 30, sentences: int = 1, api_key: str | None = None
) -> StubLLM:
    """Start the stub on a free loopback port; return once it answers."""
    from tests.e2e.conftest import free_port

    port = free_port()
    args = [sys.executable, "-m", "tests.stub_llm", "--port", str(port), "--delay-ms", str(delay_ms)]
    args += ["--sentences", str(sentences)] + (["--api-key", api_key] if api_key else [])
    root = Path(__file__).resolve().parents[1]
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=root, env=dict(os.environ))
    stub = StubLLM(f"http://127.0.0.1:{port}/v1", proc)
    from tests.timing import WaitTimeout, until

    def answers() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"stub LLM exited: {log.read_text(errors='replace')}")
        httpx.get(f"http://127.0.0.1:{port}/requests", timeout=1)
        return True

    try:
        until(answers, 30, 0.1, ignore=(httpx.TransportError,), message="the stub LLM answers")
    except WaitTimeout:
        stub.stop()
        raise
    return stub


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-ms", type=int, default=30)
    parser.add_argument("--sentences", type=int, default=1)
    parser.add_argument("--api-key")
    args = parser.parse_args()
    app = build_app(args.delay_ms / 1000, args.sentences, args.api_key)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", loop="asyncio")


if __name__ == "__main__":
    main()
