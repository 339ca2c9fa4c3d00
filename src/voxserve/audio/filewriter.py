"""Audio files written piece by piece, in any response format, that survive a crash of the writer.

A speech job's audio can be hours long, so it goes to disk as it is synthesized instead of being held
in memory, and a server killed mid-job resumes it after a restart. :class:`AudioFileWriter` therefore
writes raw PCM to a *spool* file beside the final one (``<name>.part``: s16le mono, after a 44-byte
WAV header when the format is ``wav``), and makes the response format only at :meth:`close`:

- ``pcm`` and ``wav``: the spool *is* the file; ``close`` writes the exact WAV sizes and renames it.
- the compressed formats (mp3, opus, aac, flac): ``close`` encodes the spool in one pass, through the
  same streaming encoders as the speech route, into ``<name>.tmp``, then renames it.

Why not encode as the audio comes and append after a restart: an encoder's state cannot be saved
(the MP3 bit reservoir, Opus granule positions and Ogg page numbers, FLAC's total samples and MD5 in
STREAMINFO), so a file continued by a second encoder is not one valid stream. PCM can be cut back to
any sample: :meth:`sync` makes the audio so far durable, a resumed writer (``resume_bytes``) truncates
the spool to the last durable length and appends from there, and the final file is made exactly as an
uninterrupted run makes it. The price is disk: 48 kB per second of 24 kHz audio while the job runs,
and one encoding pass at the end (about a minute per 10 h of audio here, in the job's thread).

Every method blocks (file I/O, encoding): call them from a worker thread, one at a time.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import BinaryIO

from voxserve.audio.encode import FORMATS, make_encoder, wav_header
from voxserve.audio.pcm import s16_to_float
from voxserve.errors import InvalidValue, TextTooLong

__all__ = ["MAX_WAV_DATA_BYTES", "SPOOL_SUFFIX", "AudioFileWriter", "SpoolLost", "writer_files"]

MAX_WAV_DATA_BYTES = 0xFFFFFFFF - 36
"""The most audio a RIFF/WAVE file can describe (its sizes are 32-bit): about 24.8 h at 24 kHz."""
SPOOL_SUFFIX = ".part"
_TMP_SUFFIX = ".tmp"
_WAV_HEADER_BYTES = 44
_ENCODE_SECONDS = 10
"""PCM encoded per step when the spool becomes a compressed file (fixed: the same file every time)."""


def writer_files(path: Path) -> tuple[Path, ...]:
    """Every file a writer of ``path`` may leave: the final file, its spool, the encoder's output."""
    return (path, path.with_name(path.name + SPOOL_SUFFIX), path.with_name(path.name + _TMP_SUFFIX))


class SpoolLost(Exception):
    """A writer cannot resume: its spool is missing or shorter than the durable length it was given."""


class AudioFileWriter:
    """One audio file being written: :meth:`write` PCM (and :meth:`sync` it), then :meth:`close`
    (or :meth:`discard`, or :meth:`release` to resume later)."""

    def __init__(self, path: Path, fmt: str, sample_rate: int, *, resume_bytes: int | None = None) -> None:
        """Start ``path`` (a fresh spool) for ``fmt`` audio at ``sample_rate`` Hz, or, with
        ``resume_bytes``, resume its spool cut back to that many PCM bytes.

        Raises :class:`~voxserve.errors.InvalidValue` ``unsupported_format`` for an unknown format,
        before any file is created, and :class:`SpoolLost` when there is nothing to resume.
        """
        if fmt not in FORMATS:
            raise InvalidValue(
                f"Unsupported response_format {fmt!r}; choose one of {', '.join(FORMATS)}",
                code="unsupported_format",
                param="response_format",
            )
        self.path = path
        self.fmt = fmt
        self.sample_rate = sample_rate
        self.spool = path.with_name(path.name + SPOOL_SUFFIX)
        self._header = _WAV_HEADER_BYTES if fmt == "wav" else 0
        if resume_bytes is None:
            self.data_bytes = 0
            """PCM bytes written so far (before encoding)."""
            self._file: BinaryIO = open(self.spool, "wb")  # noqa: SIM115 - held open across many write() calls
            if fmt == "wav":
                self._file.write(wav_header(sample_rate, None))
        else:
            self.data_bytes = resume_bytes
            self._file = self._resume(resume_bytes)

    def _resume(self, resume_bytes: int) -> BinaryIO:
        if not self.spool.exists() and self.fmt in ("pcm", "wav") and self.path.exists():
            # Killed between the rename that finished the file and the record saying so.
            os.replace(self.path, self.spool)
        try:
            handle = open(self.spool, "r+b")  # noqa: SIM115
        except FileNotFoundError:
            raise SpoolLost(f"{self.spool.name} is missing") from None
        wanted = self._header + resume_bytes
        size = os.fstat(handle.fileno()).st_size
        if size < wanted:
            handle.close()
            raise SpoolLost(f"{self.spool.name} has {size} bytes, {wanted} were durable")
        handle.truncate(wanted)  # audio after the last durable section is made again
        if self.fmt == "wav":
            handle.seek(0)
            handle.write(wav_header(self.sample_rate, None))
        handle.seek(wanted)
        return handle

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
        self._file.write(pcm)

    def sync(self) -> int:
        """Make every byte written so far durable (flush and fsync); return :attr:`data_bytes`."""
        self._file.flush()
        os.fsync(self._file.fileno())
        return self.data_bytes

    def close(self) -> int:
        """Make the final file at :attr:`path` (exact WAV sizes; the compressed formats encoded from
        the spool) and return its size in bytes. A compressed format's spool stays until
        :meth:`remove_spool`, so a crash before the caller records the result can make it again."""
        if self.fmt == "wav":
            self._file.seek(0)
            self._file.write(wav_header(self.sample_rate, self.data_bytes))
            self._file.seek(0, 2)
        self.sync()
        self._file.close()
        if self._encoder_needed:
            self._encode()
        else:
            os.replace(self.spool, self.path)
        return self.path.stat().st_size

    @property
    def _encoder_needed(self) -> bool:
        return self.fmt not in ("pcm", "wav")

    def _encode(self) -> None:
        encoder = make_encoder(self.fmt, self.sample_rate)
        tmp = self.path.with_name(self.path.name + _TMP_SUFFIX)
        step = 2 * self.sample_rate * _ENCODE_SECONDS
        with open(self.spool, "rb") as source, open(tmp, "wb") as out:
            while pcm := source.read(step):
                out.write(encoder.encode(s16_to_float(pcm)))
            out.write(encoder.finish())
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, self.path)

    def remove_spool(self) -> None:
        """Delete what :meth:`close` left besides the final file."""
        for leftover in writer_files(self.path)[1:]:
            with contextlib.suppress(OSError):
                leftover.unlink(missing_ok=True)

    def release(self) -> None:
        """Close the spool and keep it, to resume later (a server stopping mid-job). Idempotent."""
        with contextlib.suppress(OSError, ValueError):
            self._file.close()

    def discard(self) -> None:
        """Close and delete every file of this writer (a failed or cancelled job leaves nothing
        behind). Idempotent."""
        self.release()
        self.remove_spool()
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)

    @property
    def file_bytes(self) -> int:
        """Bytes in the spool so far (buffered writes included)."""
        return self._header + self.data_bytes

    @property
    def audio_s(self) -> float:
        """Seconds of audio written so far."""
        return self.data_bytes / 2 / self.sample_rate
