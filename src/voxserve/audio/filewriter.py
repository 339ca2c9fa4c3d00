"""Audio written to a file piece by piece, in any response format, with exact sizes at the end.

A speech job's audio can be hours long, so it goes to disk as it is synthesized instead of being held
in memory. :class:`AudioFileWriter` takes s16le mono PCM (what the workers send) and writes the
response format: ``pcm`` as it comes; ``wav`` after a header that says "unknown length" until
:meth:`~AudioFileWriter.close` rewrites it with the exact sizes (so a file cut short by a crash still
plays); the compressed formats through the same streaming encoders as the speech route.

Every method blocks (file I/O, encoding): call them from a worker thread, one at a time.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from voxserve.audio.encode import StreamEncoder, make_encoder, wav_header
from voxserve.audio.pcm import s16_to_float
from voxserve.errors import TextTooLong

__all__ = ["MAX_WAV_DATA_BYTES", "AudioFileWriter"]

MAX_WAV_DATA_BYTES = 0xFFFFFFFF - 36
"""The most audio a RIFF/WAVE file can describe (its sizes are 32-bit): about 24.8 h at 24 kHz."""


class AudioFileWriter:
    """One audio file being written: :meth:`write` PCM, then :meth:`close` (or :meth:`discard`)."""

    def __init__(self, path: Path, fmt: str, sample_rate: int) -> None:
        """Create ``path`` (truncating it) for ``fmt`` audio at ``sample_rate`` Hz.

        Raises :class:`~voxserve.errors.InvalidValue` ``unsupported_format`` for an unknown format,
        before the file is created.
        """
        self.path = path
        self.fmt = fmt
        self.sample_rate = sample_rate
        self.data_bytes = 0
        """PCM bytes written so far (before encoding)."""
        # The raw formats need no encoder; the others get one now, so codec errors come before the file.
        self._encoder: StreamEncoder | None = None
        if fmt not in ("pcm", "wav"):
            self._encoder = make_encoder(fmt, sample_rate)
        self._file = open(path, "wb")  # noqa: SIM115 - held open across many write() calls
        if fmt == "wav":
            self._file.write(wav_header(sample_rate, None))

    def write(self, pcm: bytes) -> None:
        """Append s16le mono PCM. A WAV file that would pass 4 GiB of audio raises
        :class:`~voxserve.errors.TextTooLong` ``audio_too_long``: the header could not say its size."""
        if not pcm:
            return
        if self.fmt == "wav" and self.data_bytes + len(pcm) > MAX_WAV_DATA_BYTES:
            raise TextTooLong(
                "the audio is longer than a WAV file can hold (4 GiB); choose another response_format, "
                "a faster speed or a shorter text",
                code="audio_too_long",
            )
        self.data_bytes += len(pcm)
        if self._encoder is None:
            self._file.write(pcm)
        else:
            self._file.write(self._encoder.encode(s16_to_float(pcm)))

    def close(self) -> int:
        """Flush the encoder, write the exact WAV sizes, close the file; return its size in bytes."""
        if self._encoder is not None:
            self._file.write(self._encoder.finish())
        if self.fmt == "wav":
            self._file.seek(0)
            self._file.write(wav_header(self.sample_rate, self.data_bytes))
            self._file.seek(0, 2)
        size = self._file.tell()
        self._file.close()
        return size

    def discard(self) -> None:
        """Close and delete the file (a failed or cancelled job leaves nothing behind). Idempotent."""
        if self._encoder is not None:
            # Close the codec and its container now rather than whenever they are collected.
            with contextlib.suppress(Exception):
                self._encoder.finish()
        with contextlib.suppress(OSError, ValueError):
            self._file.close()
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)

    @property
    def file_bytes(self) -> int:
        """Bytes in the file so far (buffered writes included)."""
        return self._file.tell()

    @property
    def audio_s(self) -> float:
        """Seconds of audio written so far."""
        return self.data_bytes / 2 / self.sample_rate
