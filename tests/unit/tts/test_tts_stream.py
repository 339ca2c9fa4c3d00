"""SpeakSession: text pieces in, ordered sentence and audio events out, barge-in, limits."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest
from tests.timing import scaled

from voxserve.audio.encode import wav_header
from voxserve.engines.base import WordTiming
from voxserve.errors import EngineFailure, TextTooLong, VoxserveError
from voxserve.runtime.messages import Chunk
from voxserve.text.markup import Fragment, Pause
from voxserve.tts.stream import (
    AudioData,
    Cancelled,
    Failed,
    Finished,
    SentenceStarted,
    SpeakEvent,
    SpeakSession,
)

RATE = 1000


class FakeStream:
    """Two chunks of 0.1 s per fragment, ``delay_s`` apart; records aborts."""

    def __init__(self, text: str, delay_s: float, fail: bool) -> None:
        self.text = text
        self.delay_s = delay_s
        self.fail = fail
        self.aborted = False

    async def _chunks(self) -> AsyncIterator[Chunk]:
        if self.fail:
            raise EngineFailure("boom", code="worker_crashed")
        pcm = np.full(100, 1000, dtype="<i2").tobytes()
        for i in range(2):
            await asyncio.sleep(self.delay_s)
            words = (WordTiming(self.text.split()[0], 0.0, 0.05),) if i == 0 and self.text else ()
            yield Chunk(1, pcm, fragment=0 if i == 0 else -1, text=self.text, words=words)

    def __aiter__(self) -> AsyncIterator[Chunk]:
        return self._chunks()

    def abort(self) -> None:
        self.aborted = True


class Harness:
    def __init__(self, delay_s: float = 0.0, fail_on: str | None = None, **kwargs: object) -> None:
        self.events: list[SpeakEvent] = []
        self.changed = asyncio.Condition()
        self.spoken: list[str] = []
        self.planned: list[tuple[Fragment, ...]] = []
        """Each synthesis job's fragments (text, pauses, overrides) as the session planned them."""
        self.streams: list[FakeStream] = []
        self.delay_s = delay_s
        self.fail_on = fail_on
        self.session = SpeakSession(self.synth, self.emit, **{"sample_rate": RATE, **kwargs})  # type: ignore[arg-type]
        self.session.start()

    async def synth(self, fragments: tuple[Fragment, ...]) -> FakeStream:
        self.planned.append(fragments)
        text = " ".join(f for f in fragments if isinstance(f, str))
        self.spoken.append(text)
        stream = FakeStream(text, self.delay_s, fail=self.fail_on is not None and self.fail_on in text)
        self.streams.append(stream)
        return stream

    async def emit(self, event: SpeakEvent) -> None:
        async with self.changed:
            self.events.append(event)
            self.changed.notify_all()

    async def until(self, predicate: Callable[[], bool]) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(predicate), scaled(5))

    async def finish(self) -> None:
        self.session.end()
        await asyncio.wait_for(self.session.finished.wait(), scaled(5))
        await self.session.close()

    def of(self, kind: type) -> list:  # type: ignore[type-arg]
        return [e for e in self.events if isinstance(e, kind)]


async def test_tokens_become_sentences_in_order() -> None:
    h = Harness()
    tokens = ["One", "two", "three,", "four", "five.", "Six", "seven", "eight", "nine", "ten.", "Last", "bit"]
    for token in tokens:
        h.session.push(token + " ")
    await h.finish()
    assert h.spoken == ["One two three", "four five.", "Six seven eight nine ten.", "Last bit"]
    sentences = h.of(SentenceStarted)
    texts = ["One two three,", "four five.", "Six seven eight nine ten.", "Last bit"]
    assert [s.text for s in sentences] == texts
    # Times are session times: each fragment's audio is 0.2 s.
    assert [s.start_s for s in sentences] == [0.0, 0.2, 0.4, 0.6]
    assert sentences[1].words == (WordTiming("four", 0.2, 0.25),)
    assert isinstance(h.events[-1], Finished)
    assert h.events[-1].audio_s == pytest.approx(0.8)
    audio = b"".join(e.data for e in h.of(AudioData))
    assert len(audio) == 2 * 800


async def test_sentence_event_precedes_its_audio() -> None:
    h = Harness()
    h.session.push("First sentence here. Second one here. ")
    await h.finish()
    kinds = [type(e).__name__ for e in h.events]
    assert kinds == ["SentenceStarted", "AudioData", "AudioData"] * 2 + ["Finished"]


async def test_text_is_normalised_before_synthesis() -> None:
    h = Harness()
    h.session.push("It costs $12.50 today. ")
    await h.finish()
    assert h.spoken == ["It costs twelve dollars and fifty cents today."]
    assert h.of(SentenceStarted)[0].text == "It costs $12.50 today."


async def test_flush_speaks_an_unfinished_sentence() -> None:
    h = Harness()
    h.session.push("no sentence end yet")
    # push() splits at once: nothing complete, so the text waits in the splitter and nothing is queued.
    assert h.session.drained.is_set() and h.session.pending_chars == len("no sentence end yet")
    h.session.flush()
    await h.until(lambda: len(h.of(AudioData)) == 2)
    assert h.spoken == ["no sentence end yet"]
    await h.finish()


async def test_cancel_stops_audio_and_drops_queued_text() -> None:
    h = Harness(delay_s=0.2)
    h.session.push("First one is here. Second one is here. Third one is here. ")
    await h.until(lambda: bool(h.of(SentenceStarted)))
    dropped = await h.session.cancel()
    assert dropped == 3  # the one being spoken and the two queued
    assert isinstance(h.events[-1], Cancelled)
    assert h.streams[0].aborted
    count = len(h.events)
    # The session goes on, and its next first fragment is short again.
    for token in ["After", "the", "cancel,", "more", "text.", ""]:
        h.session.push(token + " ")
    await h.finish()
    assert [s.text for s in h.of(SentenceStarted)][-2:] == ["After the cancel,", "more text."]
    # Nothing of the cancelled speech follows the cancel: after it come exactly the new sentences'
    # events (the new text takes longer to speak than the old fragment had left, so a straggler from
    # the old stream would show up in this sequence).
    kinds = [type(e).__name__ for e in h.events[count:]]
    assert kinds == ["SentenceStarted", "AudioData", "AudioData"] * 2 + ["Finished"], kinds


async def test_cancel_after_end_finishes_at_once() -> None:
    h = Harness(delay_s=0.2)
    h.session.push("First one is here. Second one is here. ")
    h.session.end()
    await h.until(lambda: bool(h.of(SentenceStarted)))
    await h.session.cancel()
    await asyncio.wait_for(h.session.finished.wait(), 2)
    assert isinstance(h.events[-1], Finished)
    assert len(h.of(SentenceStarted)) == 1
    await h.session.close()


async def test_a_failed_fragment_is_reported_and_the_rest_spoken() -> None:
    h = Harness(fail_on="Broken")
    h.session.push("Good one here. Broken one here. Good again here. ")
    await h.finish()
    failed = h.of(Failed)
    assert len(failed) == 1 and failed[0].error.code == "worker_crashed"
    assert [s.text for s in h.of(SentenceStarted)] == ["Good one here.", "Good again here."]


async def test_limits_refuse_text_without_accepting_it() -> None:
    h = Harness(delay_s=1.0, max_text_chars=300, max_pending_chars=400)
    with pytest.raises(TextTooLong) as too_long:
        h.session.push("x" * 301)
    assert too_long.value.code == "text_too_long"
    h.session.push("word " * 60)
    with pytest.raises(TextTooLong) as backlog:
        h.session.push("word " * 60)
    assert backlog.value.code == "backlog_full"
    await h.session.cancel()
    assert h.session.pending_chars == 0
    h.session.push("word " * 60)  # room again after the cancel
    await h.session.close()


async def test_push_after_end_is_refused() -> None:
    h = Harness()
    h.session.end()
    with pytest.raises(VoxserveError) as exc:
        h.session.push("late")
    assert exc.value.code == "ended"
    await asyncio.wait_for(h.session.finished.wait(), 5)
    await h.session.close()


async def test_wav_is_one_stream_with_one_header() -> None:
    h = Harness(fmt="wav")
    h.session.push("One sentence here. Another sentence here. ")
    await h.finish()
    audio = b"".join(e.data for e in h.of(AudioData))
    assert audio.startswith(wav_header(RATE, None))
    assert audio.count(b"RIFF") == 1
    assert len(audio) == 44 + 2 * 400


async def test_mp3_is_encoded_off_the_loop() -> None:
    h = Harness(fmt="mp3", sample_rate=24000)
    h.session.push("One sentence here. ")
    await h.finish()
    audio = b"".join(e.data for e in h.of(AudioData))
    assert audio[:3] == b"ID3" or audio[0] == 0xFF


async def test_unknown_format_is_refused() -> None:
    with pytest.raises(VoxserveError) as exc:
        SpeakSession(_never, _ignore, fmt="aac")
    assert exc.value.code == "unsupported_format"


async def _never(text: str) -> FakeStream:
    raise AssertionError("not called")


async def _ignore(event: SpeakEvent) -> None:
    return None


async def test_word_sources_are_offsets_into_all_pushed_text() -> None:
    h = Harness()
    pushed = ["Hello there. ", "It ", "costs $5 ", "today. "]
    for piece in pushed:
        h.session.push(piece)
    await h.finish()
    text = "".join(pushed)
    sentences = h.of(SentenceStarted)
    assert [s.words[0].word for s in sentences] == ["Hello", "It"]
    assert [text[a:b] for s in sentences for (a, b) in s.sources] == ["Hello", "It"]


async def test_markup_in_pushed_text_is_read_never_spoken() -> None:
    h = Harness()
    h.session.push("[pause:1s] Hello [pause=2] there. ")
    await h.finish()
    assert h.planned == [(Pause(1.0, 0, 10), "Hello", "there.")]
    assert h.spoken == ["Hello there."]


async def test_a_pause_alone_is_still_heard() -> None:
    h = Harness()
    h.session.push("Hello. ")
    h.session.push("[pause:500ms]")
    h.session.flush()
    h.session.push("🎉")  # nothing to speak and no pause: skipped
    await h.finish()
    assert h.planned == [("Hello.",), (Pause(0.5, 0, 13),)]


async def test_fragments_are_normalised_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    # Number and date expansion is text work of unbounded cost: it must not run on the loop.
    import voxserve.tts.stream as stream_module

    threads: list[int] = []
    real_plan_piece = stream_module.plan_piece

    def plan_piece(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.get_ident())
        return real_plan_piece(*args, **kwargs)

    monkeypatch.setattr(stream_module, "plan_piece", plan_piece)
    h = Harness()
    h.session.push("It costs $12.50 today. ")
    await h.finish()
    assert h.spoken == ["It costs twelve dollars and fifty cents today."]
    assert threads and threading.get_ident() not in threads
