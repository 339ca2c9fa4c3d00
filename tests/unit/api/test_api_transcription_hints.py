"""``POST /v1/audio/transcriptions`` with gpt-transcribe's hints and ``include[]=logprobs``, sent by the
official ``openai`` client to the app in process (no lifespan: a fake Whisper pool answers)."""

from __future__ import annotations

import io
import math
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import pytest

from voxserve.api.app import create_app
from voxserve.audio.decode import decode_audio
from voxserve.config import Settings
from voxserve.engines.base import Segment, Token, TranscribeOptions, TranscriptInfo, Word


class FakeStream:
    def __init__(self, items: list[Any]) -> None:
        self.items = items

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._gen()

    async def __anext__(self) -> Any:  # the route reads the info with anext()
        return self.items.pop(0)

    async def _gen(self) -> AsyncIterator[Any]:
        while self.items:
            yield self.items.pop(0)

    def abort(self) -> None:
        pass


@dataclass
class FakePool:
    calls: list[TranscribeOptions] = field(default_factory=list)

    def check_admission(self) -> None:
        pass

    async def stream_call(
        self, method: str, upload: bytes, max_seconds: float, options: TranscribeOptions
    ) -> FakeStream:
        assert method == "transcribe_upload"  # the worker decodes the upload
        audio = decode_audio(upload, max_seconds=max_seconds)
        self.calls.append(options)
        one = Word(
            " one,", 0.0, 0.3, 0.8, (Token(" one", b" one", math.log(0.8)), Token(",", b",", math.log(0.5)))
        )
        two = Word(" two", 0.3, 0.6, 0.4)  # an engine that gives no tokens
        words = (one, two) if options.word_timestamps else ()
        info = TranscriptInfo(options.language or "en", 1.0, len(audio) / 16000)
        return FakeStream([info, Segment(0, 0.0, 0.6, " one, two", words)])


def wav(seconds: float = 0.5) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\0\0" * int(16000 * seconds))
    return out.getvalue()


@pytest.fixture
def setup(monkeypatch: pytest.MonkeyPatch) -> tuple[openai.AsyncOpenAI, FakePool]:
    app = create_app(Settings(stt_models=["tiny.en"], max_keywords=3, max_languages=2))
    pool = FakePool()
    registry = app.state.vox.registry
    monkeypatch.setattr(registry, "stt_pool", lambda model: registry.stt_model_id(model) and pool)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    return openai.AsyncOpenAI(base_url="http://test/v1", api_key="k", http_client=http), pool


async def test_keywords_and_languages_reach_the_engine(setup: tuple[openai.AsyncOpenAI, FakePool]) -> None:
    api, pool = setup
    result = await api.audio.transcriptions.create(
        model="gpt-transcribe",
        file=("a.wav", wav()),
        keywords=[" Voxserve ", "Linnell"],
        languages=["EN", "fr"],
    )
    assert result.text == "one, two"
    assert [lang.code for lang in result.languages or []] == ["en"]
    options = pool.calls[-1]
    assert options.keywords == ("Voxserve", "Linnell") and options.languages == ("en", "fr")
    assert not options.word_timestamps


async def test_logprobs_are_per_token_from_the_model(setup: tuple[openai.AsyncOpenAI, FakePool]) -> None:
    api, pool = setup
    result = await api.audio.transcriptions.create(
        model="gpt-4o-transcribe", file=("a.wav", wav()), include=["logprobs"], response_format="json"
    )
    assert pool.calls[-1].word_timestamps
    assert [(lp.token, lp.logprob, [int(b) for b in lp.bytes or []]) for lp in result.logprobs or []] == [
        (" one", pytest.approx(math.log(0.8), abs=1e-6), list(b" one")),
        (",", pytest.approx(math.log(0.5), abs=1e-6), list(b",")),
        (" two", pytest.approx(math.log(0.4), abs=1e-6), list(b" two")),  # no tokens: the word's mean
    ]
    plain = await api.audio.transcriptions.create(model="whisper-1", file=("a.wav", wav()))
    assert plain.logprobs is None and plain.languages is None


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"keywords": ["a", "b", "c", "d"]}, 400, "too_many_keywords"),
        ({"keywords": ["x" * 51]}, 400, "keyword_too_long"),
        ({"languages": ["fr"]}, 400, "unsupported_language"),
        ({"languages": ["en", "fr", "de"]}, 400, "too_many_languages"),
        ({"languages": ["klingon"]}, 400, "unsupported_language"),
        ({"include": ["everything"]}, 422, "invalid_include"),
    ],
)
async def test_hints_beyond_the_limits_are_refused(
    setup: tuple[openai.AsyncOpenAI, FakePool], kwargs: dict[str, Any], status: int, code: str
) -> None:
    api, pool = setup
    with pytest.raises(openai.APIStatusError) as info:
        await api.audio.transcriptions.create(model="gpt-transcribe", file=("a.wav", wav()), **kwargs)
    assert (info.value.status_code, getattr(info.value, "code", None)) == (status, code)
    assert not pool.calls


async def test_plain_field_names_are_taken_too(setup: tuple[openai.AsyncOpenAI, FakePool]) -> None:
    api, pool = setup
    http = api._client
    response = await http.post(
        "http://test/v1/audio/transcriptions",
        data={"model": "gpt-transcribe", "keywords": ["Voxserve"], "languages": "en"},
        files={"file": ("a.wav", wav(), "audio/wav")},
    )
    assert response.status_code == 200, response.text
    assert pool.calls[-1].keywords == ("Voxserve",) and pool.calls[-1].languages == ("en",)
