"""The Transcribe tab's microphone chunks: 16-bit WAV is converted in the server; anything else is
refused there, never decoded (uploads are decoded only in a Whisper worker)."""

from __future__ import annotations

import numpy as np
import pytest
from tests.audio_helpers import silence_flac

from voxserve.errors import UnsupportedMediaType
from voxserve.ui.media import pcm_to_wav_chunk
from voxserve.ui.transcribe import MicSession


class NullTranscriber:
    async def feed(self, pcm: np.ndarray) -> None:
        pass

    async def close(self) -> None:
        pass


async def test_a_wav_chunk_becomes_16k_mono() -> None:
    session = MicSession(NullTranscriber(), lambda: None)  # type: ignore[arg-type]
    try:
        pcm = (np.sin(np.arange(4800) / 10) * 8000).astype("<i2").tobytes()  # 0.1 s at 48 kHz
        out = session.to_pcm16k(pcm_to_wav_chunk(pcm, 48000))
        # A streaming resampler holds back a few milliseconds for the next chunk.
        assert out.dtype == np.float32 and 1200 <= out.size <= 1600
    finally:
        await session.close()


@pytest.mark.parametrize("chunk", [silence_flac(1.0), b"OggS" + bytes(200), b"not audio at all"])
async def test_a_chunk_that_is_not_16_bit_wav_is_refused_not_decoded(
    chunk: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_decoding(*args: object, **kwargs: object) -> None:
        raise AssertionError("the server process decoded an upload")

    monkeypatch.setattr("voxserve.audio.decode.decode_audio", no_decoding)
    session = MicSession(NullTranscriber(), lambda: None)  # type: ignore[arg-type]
    try:
        with pytest.raises(UnsupportedMediaType) as info:
            session.to_pcm16k(chunk)
        assert info.value.code == "unsupported_media_type"
    finally:
        await session.close()
