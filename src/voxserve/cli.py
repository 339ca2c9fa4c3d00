"""The ``voxserve`` command: ``serve``, ``say`` and ``voices``.

Every setting is also an environment variable ``VOXSERVE_<NAME>``; flags win over the environment.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _offline_environment() -> None:
    # Before anything can import onnxruntime or a hub client: no telemetry, no downloads.
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _settings(**overrides: Any) -> Any:
    from pydantic import ValidationError

    from voxserve.config import Settings

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        sys.exit(f"voxserve: invalid configuration:\n{exc}")


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from voxserve.api.app import create_app

    settings = _settings(
        host=args.host,
        port=args.port,
        workers_per_engine=args.workers_per_engine,
        threads_per_worker=args.threads_per_worker,
        log_level=args.log_level,
    )
    app = create_app(settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=10,
    )
    return 0


def _say(args: argparse.Namespace) -> int:
    from voxserve.errors import VoxserveError
    from voxserve.speak import speak

    out = Path(args.output)
    fmt = args.format or (out.suffix.lstrip(".").lower() or "mp3")
    if fmt == "ogg":
        fmt = "opus"
    if fmt not in ("mp3", "opus", "aac", "flac", "wav", "pcm"):
        sys.exit(f"voxserve say: unsupported format {fmt!r} (mp3, opus, aac, flac, wav, pcm)")
    text = sys.stdin.read() if args.text == "-" else args.text
    settings = _settings(workers_per_engine=1, preload_engines=[])
    try:
        data = asyncio.run(speak(text, voice=args.voice, fmt=fmt, speed=args.speed, settings=settings))
    except VoxserveError as exc:
        sys.exit(f"voxserve say: {exc.message} ({exc.code})")
    out.write_bytes(data)
    print(f"wrote {out} ({len(data)} bytes, {fmt})", file=sys.stderr)
    return 0


def _voices(args: argparse.Namespace) -> int:
    from voxserve.speak import list_voices

    settings = _settings(workers_per_engine=1, preload_engines=[])
    for v in asyncio.run(list_voices(settings)):
        print(f"{v.id:40s} {v.language:8s} {v.sample_rate:6d} Hz  {v.description}")
    aliases = settings.voice_aliases
    print("\nOpenAI voice names:", ", ".join(f"{k}→{v}" for k, v in aliases.items()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voxserve", description="Offline streaming speech server.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8000)")
    serve.add_argument("--workers-per-engine", type=int, help="worker processes per engine")
    serve.add_argument("--threads-per-worker", type=int, help="inference threads per worker")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.set_defaults(func=_serve)

    say = sub.add_parser("say", help="speak text into an audio file")
    say.add_argument("text", help='the text to speak ("-" reads standard input)')
    say.add_argument("-o", "--output", required=True, help="output file (format from its extension)")
    say.add_argument("--voice", help="voice id, OpenAI voice name or blend")
    say.add_argument("--format", help="mp3, opus, aac, flac, wav or pcm")
    say.add_argument("--speed", type=float, default=1.0, help="0.25 to 4.0")
    say.set_defaults(func=_say)

    voices = sub.add_parser("voices", help="list the installed voices")
    voices.set_defaults(func=_voices)
    return parser


def main(argv: list[str] | None = None) -> int:
    _offline_environment()
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
