"""Audio files written piece by piece: exact WAV sizes, every format decodes, discard leaves nothing,
and a writer killed mid-file resumes into the file an uninterrupted one makes."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from voxserve.audio import filewriter
from voxserve.audio.filewriter import AudioFileWriter, SpoolLost
from voxserve.audio.pcm import float_to_s16
from voxserve.errors import InvalidValue, TextTooLong

RATE = 24000


def tone(seconds: float) -> bytes:
    t = np.arange(round(seconds * RATE), dtype=np.float32) / RATE
    return float_to_s16((0.4 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))


def write(path: Path, fmt: str, pieces: list[bytes]) -> int:
    writer = AudioFileWriter(path, fmt, RATE)
    for piece in pieces:
        writer.write(piece)
    size = writer.close()
    writer.remove_spool()
    return size


def test_wav_has_exact_sizes_after_close(tmp_path: Path) -> None:
    pieces = [tone(0.5), tone(0.25), b"", tone(1.0)]
    path = tmp_path / "a.wav"
    size = write(path, "wav", pieces)
    data = path.read_bytes()
    assert size == len(data) == 44 + sum(map(len, pieces))
    riff, data_size = struct.unpack_from("<4xI", data)[0], struct.unpack_from("<I", data, 40)[0]
    assert (riff, data_size) == (len(data) - 8, len(data) - 44)
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (RATE, 1, 2)
        assert w.getnframes() == round(1.75 * RATE)
        assert w.readframes(w.getnframes()) == b"".join(pieces)


def test_unfinished_wav_spool_says_unknown_length(tmp_path: Path) -> None:
    # A spool cut short (the server killed mid-job) still plays as a stream of unknown length.
    writer = AudioFileWriter(tmp_path / "b.wav", "wav", RATE)
    writer.write(tone(0.1))
    writer.sync()
    assert not (tmp_path / "b.wav").exists()
    assert struct.unpack_from("<I", writer.spool.read_bytes(), 40)[0] == 0xFFFFFFFF
    writer.discard()
    assert not writer.spool.exists()


def test_pcm_is_the_samples(tmp_path: Path) -> None:
    pieces = [tone(0.3), tone(0.2)]
    path = tmp_path / "a.pcm"
    assert write(path, "pcm", pieces) == sum(map(len, pieces))
    assert path.read_bytes() == b"".join(pieces)


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac"])
def test_compressed_formats_decode_to_the_whole_length(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"a.{fmt}"
    size = write(path, fmt, [tone(0.7), tone(0.9), tone(0.4)])
    assert size == path.stat().st_size > 0
    with av.open(str(path)) as container:
        samples = sum(frame.samples / frame.sample_rate for frame in container.decode(audio=0))
    assert samples == pytest.approx(2.0, abs=0.12)


def test_writer_tracks_audio_seconds(tmp_path: Path) -> None:
    writer = AudioFileWriter(tmp_path / "a.mp3", "mp3", RATE)
    writer.write(tone(1.5))
    assert writer.audio_s == pytest.approx(1.5)
    writer.discard()


def test_discard_deletes_the_file_and_is_idempotent(tmp_path: Path) -> None:
    for fmt in ("wav", "mp3"):
        path = tmp_path / f"c.{fmt}"
        writer = AudioFileWriter(path, fmt, RATE)
        writer.write(tone(0.2))
        writer.discard()
        writer.discard()
        assert list(tmp_path.iterdir()) == []


def test_unknown_format_fails_before_the_file_exists(tmp_path: Path) -> None:
    with pytest.raises(InvalidValue):
        AudioFileWriter(tmp_path / "d.ogg", "ogg", RATE)
    assert list(tmp_path.iterdir()) == []


def test_wav_over_4_gib_is_refused_not_mislabelled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(filewriter, "MAX_WAV_DATA_BYTES", 1000)
    writer = AudioFileWriter(tmp_path / "e.wav", "wav", RATE)
    writer.write(b"\0" * 1000)
    with pytest.raises(TextTooLong) as info:
        writer.write(b"\0\0")
    assert info.value.code == "audio_too_long"
    writer.discard()


def decoded(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.concatenate([frame.to_ndarray().reshape(-1) for frame in container.decode(audio=0)])


@pytest.mark.parametrize("fmt", ["wav", "pcm", "mp3", "opus", "aac", "flac"])
def test_a_resumed_file_is_the_uninterrupted_one(tmp_path: Path, fmt: str) -> None:
    pieces = [tone(0.4), tone(0.3), tone(0.5)]
    whole = tmp_path / f"whole.{fmt}"
    write(whole, fmt, pieces)
    # Killed after the second piece was written but before it was recorded as durable.
    path = tmp_path / f"resumed.{fmt}"
    first = AudioFileWriter(path, fmt, RATE)
    first.write(pieces[0])
    durable = first.sync()
    first.write(pieces[1][: len(pieces[1]) // 3])  # half a section, never recorded
    first.release()
    again = AudioFileWriter(path, fmt, RATE, resume_bytes=durable)
    assert again.data_bytes == durable and again.audio_s == pytest.approx(0.4)
    for piece in pieces[1:]:
        again.write(piece)
    size = again.close()
    again.remove_spool()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([whole.name, path.name])
    assert size == path.stat().st_size
    if fmt in ("wav", "pcm"):
        assert path.read_bytes() == whole.read_bytes()
    else:  # the same stream (an Ogg serial number is random, so compare what decodes)
        assert np.array_equal(decoded(path), decoded(whole))


def test_a_finished_raw_file_resumes_from_its_final_name(tmp_path: Path) -> None:
    # Killed after close() renamed the spool but before the job's record said so.
    path = tmp_path / "a.wav"
    writer = AudioFileWriter(path, "wav", RATE)
    writer.write(tone(0.2))
    durable = writer.sync()
    writer.close()
    again = AudioFileWriter(path, "wav", RATE, resume_bytes=durable)
    again.write(tone(0.1))
    again.close()
    with wave.open(str(path)) as w:
        assert w.getnframes() == round(0.3 * RATE)


def test_nothing_to_resume_is_told(tmp_path: Path) -> None:
    with pytest.raises(SpoolLost):
        AudioFileWriter(tmp_path / "a.mp3", "mp3", RATE, resume_bytes=100)
    writer = AudioFileWriter(tmp_path / "b.mp3", "mp3", RATE)
    writer.write(b"\0" * 50)
    writer.release()
    with pytest.raises(SpoolLost):
        AudioFileWriter(tmp_path / "b.mp3", "mp3", RATE, resume_bytes=100)
