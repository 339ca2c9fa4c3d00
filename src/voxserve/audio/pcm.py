"""Conversion between voxserve's float32 audio and 16-bit little-endian PCM bytes."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from voxserve.errors import InvalidRequest

__all__ = ["STT_SAMPLE_RATE", "FloatAudio", "float_to_s16", "float_to_s16_array", "s16_to_float"]

FloatAudio = npt.NDArray[np.float32]
"""Mono float32 samples in [-1, 1]: the one audio type every layer passes around."""

STT_SAMPLE_RATE = 16000
"""The rate every speech-to-text engine and VAD takes."""

_S16_SCALE = 32767.0


def float_to_s16_array(audio: FloatAudio) -> npt.NDArray[np.int16]:
    """Clip ``audio`` to [-1, 1] and scale it by 32767 to little-endian int16 samples."""
    scaled = np.clip(audio, -1.0, 1.0) * _S16_SCALE
    # Round rather than truncate: truncation biases every sample towards zero.
    samples: npt.NDArray[np.int16] = np.rint(scaled).astype("<i2")
    return samples


def float_to_s16(audio: FloatAudio) -> bytes:
    """Clip ``audio`` to [-1, 1], scale by 32767 and return it as little-endian int16 bytes."""
    return float_to_s16_array(audio).tobytes()


def s16_to_float(data: bytes) -> FloatAudio:
    """Interpret little-endian int16 bytes as float32 samples in [-1, 1].

    The scale is the inverse of :func:`float_to_s16`'s, so s16 -> float -> s16 gives the same samples
    back (except -32768, which has no positive twin and comes back as -32767).

    Raises :class:`~voxserve.errors.InvalidRequest` (``misaligned_pcm``) when ``data`` has an odd
    length, because half a sample means the client's framing is broken.
    """
    if len(data) % 2:
        raise InvalidRequest("PCM data must be 16-bit samples: the byte count is odd", code="misaligned_pcm")
    samples = np.frombuffer(data, dtype="<i2").astype(np.float32)
    samples *= np.float32(1.0 / _S16_SCALE)
    np.maximum(samples, -1.0, out=samples)
    return samples
