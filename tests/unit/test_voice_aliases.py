"""OpenAI's voice names: each gives an English voice by default, and /v1/audio/voices says which."""

from __future__ import annotations

import httpx
import pytest

from voxserve.api.app import create_app
from voxserve.config import DEFAULT_VOICE_ALIASES, Settings
from voxserve.engines.base import VoiceInfo

OPENAI_VOICES = (
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


def _is_english(voice_id: str) -> bool:
    """Whether a voice id names an English voice, by each engine's naming rule."""
    engine, _, name = voice_id.partition("/")
    if engine == "piper":
        return name.startswith("en_")  # en_US-joe-medium, en_GB-...
    if engine == "kokoro":
        return name[:1] in ("a", "b")  # Kokoro's first letter is the language: a/b are en-US/en-GB
    if engine == "espeak":
        return name.startswith("en")
    return False


@pytest.mark.parametrize("name", OPENAI_VOICES)
def test_every_openai_voice_name_gives_an_english_voice(name: str) -> None:
    target = Settings().voice_aliases[name]
    assert target == DEFAULT_VOICE_ALIASES[name]
    assert _is_english(target), f"{name} -> {target} is not an English voice"
    # The Japanese Kokoro voices read English slowly and with an accent (issue 17): never a default.
    assert not target.partition("/")[2].startswith(("jf_", "jm_")), f"{name} -> {target}"


def test_the_table_covers_exactly_openais_names() -> None:
    assert set(DEFAULT_VOICE_ALIASES) == set(OPENAI_VOICES)


def test_the_default_voices_are_as_fast_as_alloy() -> None:
    """First audio within 1.5x of alloy's: the same engine family as alloy (Piper) by default."""
    engines = {target.partition("/")[0] for target in DEFAULT_VOICE_ALIASES.values()}
    assert engines == {DEFAULT_VOICE_ALIASES["alloy"].partition("/")[0]} == {"piper"}


def test_the_english_rule_rejects_the_japanese_voices() -> None:
    assert not _is_english("kokoro/jf_alpha")
    assert not _is_english("kokoro/jm_kumo")
    assert _is_english("kokoro/af_heart") and _is_english("piper/en_US-joe-medium")


VOICES = [
    VoiceInfo(id="piper/en_US-joe-medium", name="en_US-joe-medium", engine="piper", language="en-US",
              sample_rate=22050, description="Piper voice"),
    VoiceInfo(id="kokoro/jf_alpha", name="jf_alpha", engine="kokoro", language="ja", sample_rate=24000,
              description="Kokoro voice"),
    VoiceInfo(id="kokoro/jm_kumo", name="jm_kumo", engine="kokoro", language="ja", sample_rate=24000,
              description="Kokoro voice"),
]  # fmt: skip


async def _voices_route(settings: Settings) -> dict[str, object]:
    app = create_app(settings)

    async def voices() -> list[VoiceInfo]:  # no worker starts in a unit test
        return VOICES

    app.state.vox.registry.voices = voices
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        r = await client.get("/v1/audio/voices")
    assert r.status_code == 200
    body: dict[str, object] = r.json()
    return body


async def test_voices_route_says_which_voice_each_openai_name_gives() -> None:
    body = await _voices_route(Settings(ui_enabled=False))
    assert body["aliases"] == DEFAULT_VOICE_ALIASES
    rows = body["alias_voices"]
    assert isinstance(rows, list)
    assert [r["alias"] for r in rows] == list(DEFAULT_VOICE_ALIASES)
    for row in rows:
        assert row == {
            "alias": row["alias"],
            "voice": "piper/en_US-joe-medium",
            "engine": "piper",
            "language": "en-US",
        }


async def test_voices_route_describes_own_aliases_and_blends() -> None:
    own = {
        "nova": "kokoro/jf_alpha(2)+jm_kumo",
        "echo": "kokoro/jm_kumo-jf_alpha(0.5)",
        "ghost": "piper/en_US-nobody-low",
    }
    body = await _voices_route(Settings(ui_enabled=False, voice_aliases=own))
    rows = {r["alias"]: r for r in body["alias_voices"]}  # type: ignore[attr-defined]
    assert rows["nova"] == {"alias": "nova", "voice": own["nova"], "engine": "kokoro", "language": "ja"}
    assert rows["echo"]["language"] == "ja"
    assert rows["ghost"] == {"alias": "ghost", "voice": own["ghost"], "engine": "piper", "language": None}
