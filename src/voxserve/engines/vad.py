"""Silero VAD v6 on onnxruntime: a speech probability for every 32 ms of 16 kHz audio.

The model is the ``silero_vad_v6.onnx`` that faster-whisper ships, run the way faster-whisper runs
it (``silero_vad`` itself is not imported: it needs torch). Its inputs are ``input`` of shape
``[N, 576]`` (N frames of 512 new samples, each preceded by the last 64 samples of the frame before
it), and the LSTM state ``h`` and ``c`` of shape ``[1, 1, 128]``; its outputs are one probability per
frame and the new state. The N frames form one time sequence, so a batch of frames gives the same
probabilities as the same frames one call at a time, which is what lets :meth:`VadStream.probabilities`
batch whatever has arrived.

One :class:`SileroVadModel` (one ORT session, whose ``run`` is thread-safe) serves many
:class:`VadStream` objects, each holding one audio stream's state.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from voxserve.engines.base import FloatAudio
from voxserve.errors import EngineFailure

__all__ = [
    "CONTEXT_SAMPLES",
    "FRAME_SAMPLES",
    "SAMPLE_RATE",
    "SileroVadModel",
    "VadStream",
    "default_model_path",
]

SAMPLE_RATE = 16000
FRAME_SAMPLES = 512
"""New samples per frame at 16 kHz (32 ms)."""
CONTEXT_SAMPLES = 64
"""Samples of the previous frame the model sees in front of each frame."""

_STATE_SHAPE = (1, 1, 128)
_MAX_BATCH = 10_000
"""Frames per ORT call (320 s of audio), as faster-whisper does, to bound the memory of one call."""

StateArray = npt.NDArray[np.float32]


def default_model_path() -> Path:
    """Where faster-whisper's Silero VAD v6 model lies (found without importing faster-whisper)."""
    spec = importlib.util.find_spec("faster_whisper")
    if spec is None or not spec.submodule_search_locations:
        raise EngineFailure("faster-whisper is not installed: no VAD model", code="model_missing")
    return Path(next(iter(spec.submodule_search_locations))) / "assets" / "silero_vad_v6.onnx"


class SileroVadModel:
    """The shared Silero VAD session. ``threads``: onnxruntime's intra-op threads.

    Safe to share between threads: :meth:`run` keeps no state, and ORT sessions may run concurrently.
    """

    def __init__(self, threads: int = 1, model_path: Path | None = None) -> None:
        path = model_path if model_path is not None else default_model_path()
        if not path.is_file():
            raise EngineFailure("the Silero VAD model is missing", code="model_missing")
        # Must be set before onnxruntime is imported, or it tries to phone home.
        os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
        import onnxruntime

        opts = onnxruntime.SessionOptions()
        # A 32 ms frame is far too small to gain from more threads; extra threads only oversubscribe.
        opts.intra_op_num_threads = max(1, threads)
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self._session: Any = onnxruntime.InferenceSession(
                str(path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise EngineFailure("cannot load the Silero VAD model", code="model_invalid") from exc

    def run(
        self, windows: FloatAudio, h: StateArray, c: StateArray
    ) -> tuple[npt.NDArray[np.float32], StateArray, StateArray]:
        """Probabilities for ``windows`` (``[N, 576]`` float32) from state ``h``/``c``; new state too."""
        probs, h, c = self._session.run(None, {"input": windows, "h": h, "c": c})
        return np.asarray(probs, dtype=np.float32).reshape(-1), h, c


class VadStream:
    """Speech probabilities for one 16 kHz mono stream, frame by frame, keeping the model's state.

    Feed whole frames to :meth:`process` or any amount of audio to :meth:`probabilities`; both
    continue the same stream. :meth:`reset` starts a new one.
    """

    def __init__(self, model: SileroVadModel) -> None:
        self._model = model
        self.reset()

    def reset(self) -> None:
        """Forget the audio so far: zero state, zero context, no buffered samples."""
        self._h: StateArray = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._c: StateArray = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._context: FloatAudio = np.zeros(CONTEXT_SAMPLES, dtype=np.float32)
        self._pending: FloatAudio = np.zeros(0, dtype=np.float32)

    @property
    def pending_samples(self) -> int:
        """Samples buffered by :meth:`probabilities` that do not yet make a whole frame."""
        return len(self._pending)

    def process(self, frame: FloatAudio) -> float:
        """The speech probability (0..1) of exactly :data:`FRAME_SAMPLES` samples of 16 kHz audio.

        Raises ``ValueError`` for any other length, or while :meth:`probabilities` holds a partial
        frame (the frame would come out of order).
        """
        samples = np.asarray(frame, dtype=np.float32).reshape(-1)
        if len(samples) != FRAME_SAMPLES:
            raise ValueError(f"a VAD frame is {FRAME_SAMPLES} samples, got {len(samples)}")
        if len(self._pending):
            raise ValueError("process() called while probabilities() holds part of a frame")
        return float(self._run(samples.reshape(1, FRAME_SAMPLES))[0])

    def probabilities(self, audio: FloatAudio) -> list[float]:
        """One probability per frame completed by ``audio`` (any length); the remainder is kept."""
        samples = np.asarray(audio, dtype=np.float32).reshape(-1)
        if len(self._pending):
            samples = np.concatenate([self._pending, samples])
        whole = len(samples) - len(samples) % FRAME_SAMPLES
        self._pending = samples[whole:].copy()
        if whole == 0:
            return []
        frames = samples[:whole].reshape(-1, FRAME_SAMPLES)
        out: list[float] = []
        for start in range(0, len(frames), _MAX_BATCH):
            out.extend(self._run(frames[start : start + _MAX_BATCH]).tolist())
        return out

    def _run(self, frames: FloatAudio) -> npt.NDArray[np.float32]:
        """Run ``[N, 512]`` frames: prepend each one's context, carry the state and the context."""
        context = np.empty((len(frames), CONTEXT_SAMPLES), dtype=np.float32)
        context[0] = self._context
        context[1:] = frames[:-1, -CONTEXT_SAMPLES:]
        windows = np.ascontiguousarray(np.concatenate([context, frames], axis=1))
        probs, self._h, self._c = self._model.run(windows, self._h, self._c)
        self._context = frames[-1, -CONTEXT_SAMPLES:].copy()
        return probs
