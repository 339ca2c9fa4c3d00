"""Audio helpers of the UI: WAV framing for streamed playback, download files, an ffmpeg on PATH."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
import wave
from pathlib import Path

import numpy as np

from voxserve.audio.encode import make_encoder, wav_header

__all__ = ["DOWNLOAD_DIR", "ensure_ffmpeg", "pcm_to_wav_chunk", "read_wav", "write_download"]

_log = logging.getLogger("voxserve.ui")

DOWNLOAD_DIR = Path(tempfile.gettempdir()) / "voxserve-ui"
"""Where the Speak tab writes its downloads (Gradio copies them into its own cache)."""

_DOWNLOAD_TTL_S = 3600.0
_ffmpeg_lock = threading.Lock()
_ffmpeg_ready = False


def ensure_ffmpeg(cache_dir: Path) -> None:
    """Make sure an ``ffmpeg`` is on PATH: Gradio's streamed audio output encodes AAC with it.

    A system ffmpeg wins; otherwise the static binary that the ``imageio-ffmpeg`` wheel ships is
    linked as ``<cache_dir>/bin/ffmpeg`` and that folder is put first on PATH. Blocking: call it in
    a thread.
    """
    global _ffmpeg_ready
    with _ffmpeg_lock:
        if _ffmpeg_ready or shutil.which("ffmpeg"):
            _ffmpeg_ready = True
            return
        import imageio_ffmpeg

        exe = Path(imageio_ffmpeg.get_ffmpeg_exe())
        bin_dir = cache_dir / "bin"
        bin_dir.mkdir(parents=True, exist_ok=True)
        link = bin_dir / "ffmpeg"
        if not (link.exists() and link.resolve() == exe.resolve()):
            tmp = bin_dir / f".ffmpeg-{uuid.uuid4().hex}"
            tmp.symlink_to(exe)
            tmp.replace(link)
        os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
        _ffmpeg_ready = True
        _log.info("using the bundled ffmpeg %s", exe)


def pcm_to_wav_chunk(pcm: bytes, sample_rate: int) -> bytes:
    """A self-contained WAV of one s16le mono chunk (Gradio reads WAV without ffmpeg)."""
    return wav_header(sample_rate, len(pcm)) + pcm


def read_wav(data: bytes) -> tuple[int, int, bytes] | None:
    """(sample rate, channels, s16le frames) of a 16-bit PCM WAV, or None if it is not one."""
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            if w.getsampwidth() != 2 or w.getcomptype() != "NONE":
                return None
            return w.getframerate(), w.getnchannels(), w.readframes(w.getnframes())
    except (wave.Error, EOFError):
        return None


def write_download(pcm: bytes, sample_rate: int, fmt: str) -> str:
    """Encode the whole s16le mono ``pcm`` as ``fmt`` into a fresh file; return its path. Blocking."""
    _prune(DOWNLOAD_DIR)
    audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
    encoder = make_encoder(fmt, sample_rate, streaming=False)
    data = encoder.encode(audio) + encoder.finish()
    folder = DOWNLOAD_DIR / uuid.uuid4().hex
    folder.mkdir(parents=True)
    path = folder / f"speech.{fmt}"
    path.write_bytes(data)
    return str(path)


def _prune(root: Path) -> None:
    """Remove downloads older than an hour (Gradio keeps its own copy for as long as it serves it)."""
    if not root.is_dir():
        return
    cutoff = time.time() - _DOWNLOAD_TTL_S
    for folder in root.iterdir():
        with contextlib.suppress(OSError):
            if folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
