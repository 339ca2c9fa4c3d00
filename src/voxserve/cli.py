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


def _run_server(app: Any, **uvicorn_options: Any) -> None:
    """Run ``app`` under uvicorn; a shutdown signal first closes its WebSockets with 1001."""
    import uvicorn

    from voxserve.api.ws import close_websockets

    class GracefulServer(uvicorn.Server):
        """uvicorn's server, but a shutdown signal first closes the app's WebSockets with 1001 (going
        away: clients may reconnect elsewhere) instead of letting uvicorn drop them with 1012; then
        the usual graceful shutdown runs, and the lifespan stops the workers (no orphan processes)."""

        closing: asyncio.Task[int] | None = None

        def handle_exit(self, sig: int, frame: Any) -> None:
            if self.closing is not None or self.should_exit or not app.state.open_sockets:
                super().handle_exit(sig, frame)
                return
            loop = asyncio.get_running_loop()

            def start_closing() -> None:
                self.closing = loop.create_task(close_websockets(app))
                self.closing.add_done_callback(lambda _: uvicorn.Server.handle_exit(self, sig, frame))

            # A signal handler must not run loop code itself: hand the work over thread-safely.
            loop.call_soon_threadsafe(start_closing)

    # asyncio's own loop even where uvloop is installed (ray[serve] brings it): asyncio debug mode and
    # api/transport.py's reach into uvicorn's transport are written for it.
    GracefulServer(uvicorn.Config(app, **{"loop": "asyncio", **uvicorn_options})).run()


def _serve(args: argparse.Namespace) -> int:
    from voxserve.api.app import create_app
    from voxserve.api.deadlines import header_deadline_protocol
    from voxserve.api.transport import WS_FRAME_MARGIN_BYTES, head_buffer_bytes
    from voxserve.observability import configure_logging

    settings = _settings(
        host=args.host,
        port=args.port,
        workers_per_engine=args.workers_per_engine,
        threads_per_worker=args.threads_per_worker,
        log_level=args.log_level,
        llm_base_url=args.llm_base_url,
        llm_model=args.llm_model,
        llm_api_key=args.llm_api_key,
        llm_model_path=args.llm_model_path,
        api_keys=args.api_key,
        allow_unauthenticated=args.allow_unauthenticated or None,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
        wyoming_uri=args.wyoming,
        wyoming_zeroconf=True if args.zeroconf is not None else None,
        wyoming_zeroconf_name=args.zeroconf or None,
        backend=args.backend,
        ray_address=args.ray_address,
    )
    # uvicorn configures only its own loggers: without this, voxserve's lines never reach the log.
    configure_logging(settings.log_level)
    app = create_app(settings)
    _run_server(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=10,
        # The app enforces ws_max_message_bytes itself (an error event, then 1009), as under any
        # server; uvicorn's own cap sits just above it, so the app's answer is the one clients see.
        # (The app sets these again at lifespan start-up: api/transport.py, for uvicorn --factory.)
        ws_max_size=settings.ws_max_message_bytes + WS_FRAME_MARGIN_BYTES,
        http=header_deadline_protocol(settings.header_timeout_s),
        h11_max_incomplete_event_size=head_buffer_bytes(settings),
        ws_ping_interval=settings.ws_ping_interval_s,
        ws_ping_timeout=settings.ws_ping_timeout_s,
        ssl_certfile=str(settings.ssl_certfile) if settings.ssl_certfile else None,
        ssl_keyfile=str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
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


def _transcribe(args: argparse.Namespace) -> int:
    import httpx

    from voxserve.client import ClientError
    from voxserve.client.protocol.routes import TranscriptionEvents

    path = Path(args.file)
    if not path.is_file():
        sys.exit(f"voxserve transcribe: no such file: {path}")
    url = args.server.rstrip("/") + "/v1/audio/transcriptions"
    fields = {"model": args.model, "response_format": "json", "stream": "true" if args.stream else "false"}
    if args.language:
        fields["language"] = args.language
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    try:
        with httpx.Client(timeout=600, headers=headers) as client, path.open("rb") as f:
            files = {"file": (path.name, f)}
            if not args.stream:
                r = client.post(url, data=fields, files=files)
                if r.status_code != 200:
                    sys.exit(f"voxserve transcribe: {_error_text(r)}")
                print(r.json()["text"])
                return 0
            with client.stream("POST", url, data=fields, files=files) as r:
                if r.status_code != 200:
                    r.read()
                    sys.exit(f"voxserve transcribe: {_error_text(r)}")
                events = TranscriptionEvents()  # the Python client's SSE reader
                try:
                    for chunk in r.iter_bytes():
                        _print_transcription(events.feed(chunk))
                    _print_transcription(events.end())
                except ClientError as exc:  # an error event
                    sys.exit(f"\nvoxserve transcribe: {exc.message}")
    except httpx.TransportError as exc:
        sys.exit(f"voxserve transcribe: cannot reach {args.server}: {exc}")
    return 0


def _print_transcription(events: list[Any]) -> None:
    from voxserve.client import TranscriptionDelta, TranscriptionDone

    for event in events:
        if isinstance(event, TranscriptionDelta):
            print(event.delta, end="", flush=True)
        elif isinstance(event, TranscriptionDone):
            print()


def _error_text(response: Any) -> str:
    try:
        err = response.json()["error"]
        return f"{err['message']} ({err['code']})"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}"


def _listen(args: argparse.Namespace) -> int:
    from voxserve.client import ClientError
    from voxserve.listen import listen

    path = Path(args.file)
    if not path.is_file():
        sys.exit(f"voxserve listen: no such file: {path}")
    try:
        asyncio.run(
            listen(
                path, args.server, pace=args.pace, show_partials=not args.finals_only, api_key=args.api_key
            )
        )
    except ClientError as exc:
        if exc.code == "connection_error":
            sys.exit(f"voxserve listen: cannot reach {args.server}: {exc.message}")
        # Refused at the handshake (a missing or wrong key, a bad Origin), or an error mid-stream.
        hint = " (pass --api-key or set VOXSERVE_API_KEY)" if exc.status == 401 else ""
        sys.exit(f"voxserve listen: {exc}{hint}")
    return 0


_API_KEY_HELP = "key for a server that requires one (default: $VOXSERVE_API_KEY)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voxserve", description="Offline streaming speech server.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP server")
    serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8000)")
    serve.add_argument("--workers-per-engine", type=int, help="worker processes per engine")
    serve.add_argument("--threads-per-worker", type=int, help="inference threads per worker")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--llm-base-url", help="OpenAI-compatible chat endpoint for the voice chat")
    serve.add_argument("--llm-model", help="model name sent to that endpoint")
    serve.add_argument("--llm-api-key", help="bearer token for that endpoint (or VOXSERVE_LLM_API_KEY)")
    serve.add_argument(
        "--llm-model-path",
        help="a GGUF chat model of your own for the embedded LLM (default: the packaged one)",
    )
    serve.add_argument(
        "--api-key",
        action="append",
        help="a key clients must send as 'Authorization: Bearer <key>'; repeat for several "
        "(or VOXSERVE_API_KEYS, which keeps keys out of the process list)",
    )
    serve.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        help="serve a non-loopback --host without API keys (refused otherwise)",
    )
    serve.add_argument("--ssl-certfile", help="PEM certificate (chain): serve HTTPS and WSS")
    serve.add_argument("--ssl-keyfile", help="PEM private key for --ssl-certfile")
    serve.add_argument(
        "--wyoming",
        metavar="URI",
        help="also serve the Wyoming protocol (Home Assistant), e.g. tcp://127.0.0.1:10300",
    )
    serve.add_argument(
        "--zeroconf",
        nargs="?",
        const="",
        metavar="NAME",
        help="announce the Wyoming server by zeroconf (mDNS) for Home Assistant to discover, under NAME "
        "(default: voxserve)",
    )
    serve.add_argument(
        "--backend",
        choices=["local", "ray"],
        help="where the engines run: local worker processes (default) or Ray Serve deployments",
    )
    serve.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="with --backend ray: the Ray cluster to join (host:port); default: a local Ray on 127.0.0.1",
    )
    serve.set_defaults(func=_serve)

    say = sub.add_parser("say", help="speak text into an audio file")
    say.add_argument("text", help='the text to speak ("-" reads standard input)')
    say.add_argument("-o", "--output", required=True, help="output file (format from its extension)")
    say.add_argument("--voice", help="voice id, OpenAI voice name or blend")
    say.add_argument("--format", help="mp3, opus, aac, flac, wav or pcm")
    say.add_argument("--speed", type=float, default=1.0, help="0.25 to 4.0")
    say.set_defaults(func=_say)

    tr = sub.add_parser("transcribe", help="transcribe an audio file with a running server")
    tr.add_argument("file")
    tr.add_argument("--stream", action="store_true", help="print the text as it is recognised")
    tr.add_argument("--server", default="http://127.0.0.1:8000")
    tr.add_argument("--model", default="whisper-1")
    tr.add_argument("--language")
    tr.add_argument("--api-key", default=os.environ.get("VOXSERVE_API_KEY"), help=_API_KEY_HELP)
    tr.set_defaults(func=_transcribe)

    li = sub.add_parser(
        "listen", help="stream a file at real-time pace to a server; show partials and finals"
    )
    li.add_argument("file")
    li.add_argument("--server", default="http://127.0.0.1:8000")
    li.add_argument("--pace", type=float, default=1.0, help="1.0 is real time; 0 sends as fast as possible")
    li.add_argument("--finals-only", action="store_true")
    li.add_argument("--api-key", default=os.environ.get("VOXSERVE_API_KEY"), help=_API_KEY_HELP)
    li.set_defaults(func=_listen)

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
