"""The streaming-transcription state machine, driven with arrays, a fake VAD and a fake decoder."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voxserve.engines.base import FloatAudio, Segment, Word
from voxserve.errors import Unavailable
from voxserve.stt.session import (
    DecodeRequest,
    Event,
    Final,
    Lag,
    Partial,
    SessionConfig,
    SpeechStarted,
    SpeechStopped,
    StreamingSession,
    UtteranceFailed,
)

SR = 16000
FRAME = 512
FRAME_S = FRAME / SR


def rms(x: FloatAudio) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


class FakeVad:
    """Speech (1.0) when a frame's RMS is above 0.01, else silence (0.0)."""

    frame_samples = FRAME

    def __init__(self) -> None:
        self.frames = 0

    def process(self, frame: FloatAudio) -> float:
        assert frame.size == FRAME
        self.frames += 1
        return 1.0 if rms(frame) > 0.01 else 0.0


def tone(seconds: float, amplitude: float = 0.3) -> FloatAudio:
    t = np.arange(round(seconds * SR)) / SR
    return (amplitude * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32)


def silence(seconds: float) -> FloatAudio:
    return np.zeros(round(seconds * SR), dtype=np.float32)


def frames(n: int) -> float:
    """Seconds in ``n`` VAD frames (frame-aligned test audio makes boundaries exact)."""
    return n * FRAME / SR


def join(*parts: FloatAudio) -> FloatAudio:
    return np.concatenate(parts).astype(np.float32)


def word_decoder(request: DecodeRequest) -> list[Segment]:
    """One word per 0.25 s of the request's audio that has sound: ``w0 w1 …``, timed in the audio."""
    step = SR // 4
    words: list[Word] = []
    for i in range(0, request.audio.size, step):
        piece = request.audio[i : i + step]
        if rms(piece) > 0.01:
            words.append(Word(f"w{len(words)}", i / SR, (i + piece.size) / SR))
    if not words:
        return []
    text = " " + " ".join(w.word for w in words)
    return [Segment(0, words[0].start_s, words[-1].end_s, text, tuple(words))]


def text_of(segments: Sequence[Segment]) -> str:
    return " ".join(s.text.strip() for s in segments)


@dataclass
class Driver:
    """A minimal driver: feeds chunks, answers decodes after ``delay`` feeds (None: only when asked).

    Like the real one it runs decodes concurrently, and it checks the session's promise: at most one
    partial and one final outstanding, no partial requested while anything is (with
    ``preempt_partials=False``: at most one decode outstanding at all).
    """

    session: StreamingSession
    decode: Callable[[DecodeRequest], list[Segment]] = word_decoder
    delay: int | None = 0
    newest_first: bool = False
    """Answer due requests newest first (a preempted partial then comes back after the final)."""
    events: list[Event] = field(default_factory=list)
    requests: list[DecodeRequest] = field(default_factory=list)
    pending: list[DecodeRequest] = field(default_factory=list)
    waited: dict[int, int] = field(default_factory=dict)
    most_pending: int = 0
    fed: int = 0
    at: list[float] = field(default_factory=list)
    """For each event, the stream time (seconds fed) when it came out."""

    @property
    def outstanding(self) -> DecodeRequest | None:
        """The newest request not yet answered."""
        return self.pending[-1] if self.pending else None

    def take(self, events: list[Event]) -> list[Event]:
        for event in events:
            if isinstance(event, DecodeRequest):
                kinds = [r.kind for r in self.pending]
                if event.kind == "partial" or not self.session.config.preempt_partials:
                    assert not kinds, "a decode requested while another is in flight"
                else:
                    # At most two at once: a final may preempt a partial, or its own utterance's
                    # speculative final that speech overtook (a partial now), or (finals_ahead) go
                    # beside the final of the utterance before it.
                    assert len(kinds) < 2, "three decodes in flight"
                    if not self.session.config.finals_ahead:
                        assert all(
                            r.utterance_id == event.utterance_id for r in self.pending if r.kind == "final"
                        ), "two finals in flight"
                self.pending.append(event)
                self.most_pending = max(self.most_pending, len(self.pending))
                self.requests.append(event)
                self.waited[event.request_id] = 0
        self.events.extend(events)
        self.at.extend([self.fed / SR] * len(events))
        return events

    def _next(self, request: DecodeRequest | None) -> DecodeRequest:
        if request is None:
            assert self.pending
            request = self.pending[-1] if self.newest_first else self.pending[0]
        self.pending.remove(request)
        return request

    def answer(self, request: DecodeRequest | None = None) -> list[Event]:
        request = self._next(request)
        return self.take(self.session.on_decode_result(request.request_id, self.decode(request)))

    def fail(self, request: DecodeRequest | None = None) -> list[Event]:
        request = self._next(request)
        return self.take(self.session.on_decode_failed(request.request_id))

    def feed(self, pcm: FloatAudio, chunk: int | Sequence[int] = 1600) -> list[Event]:
        sizes = [chunk] if isinstance(chunk, int) else list(chunk)
        out: list[Event] = []
        i = k = 0
        while i < pcm.size:
            n = sizes[k % len(sizes)]
            k += 1
            self.fed += min(n, pcm.size - i)
            out += self.take(self.session.feed(pcm[i : i + n]))
            i += n
            out += self.tick()
        return out

    def tick(self) -> list[Event]:
        out: list[Event] = []
        if self.delay is None:
            return out
        due: list[DecodeRequest] = []
        for request in list(self.pending):
            if self.waited[request.request_id] < self.delay:
                self.waited[request.request_id] += 1
            else:
                due.append(request)
        for request in reversed(due) if self.newest_first else due:
            out += self.answer(request)
        while self.delay == 0 and self.pending:
            out += self.answer()
        return out

    def finish(self) -> list[Event]:
        out = self.take(self.session.finish())
        while self.pending:
            out += self.answer()
        assert self.session.idle
        return out

    def of(self, kind: type) -> list[object]:
        return [e for e in self.events if isinstance(e, kind)]

    def finals(self) -> list[Final]:
        return [e for e in self.events if isinstance(e, Final)]

    def final_requests(self) -> list[DecodeRequest]:
        return [r for r in self.requests if r.kind == "final"]


def make(config: SessionConfig | None = None, **driver: object) -> Driver:
    return Driver(StreamingSession(config or SessionConfig(), FakeVad()), **driver)  # type: ignore[arg-type]


def check_invariants(events: Sequence[Event]) -> None:
    """Each utterance: SpeechStarted, Partials, SpeechStopped, exactly one Final (or failure), in order."""
    started: list[int] = []
    stopped: set[int] = set()
    done: list[int] = []
    final_ids: list[int] = []
    committed: dict[int, list[str]] = {}
    for event in events:
        if isinstance(event, SpeechStarted):
            assert event.utterance_id == (started[-1] + 1 if started else 1)
            started.append(event.utterance_id)
        elif isinstance(event, Partial):
            uid = event.utterance_id
            assert uid in started and uid not in stopped and uid not in done
            words = event.committed_text.split()
            previous = committed.get(uid, [])
            assert words[: len(previous)] == previous, "committed words changed"
            committed[uid] = words
            assert 0.0 <= event.stability <= 1.0
        elif isinstance(event, SpeechStopped):
            assert event.utterance_id in started and event.utterance_id not in stopped
            stopped.add(event.utterance_id)
        elif isinstance(event, Final | UtteranceFailed):
            uid = event.utterance_id
            assert uid in started and uid not in done, "a Final was revised"
            if isinstance(event, Final):
                assert uid in stopped
                assert not final_ids or uid > final_ids[-1], "Finals out of order"
                final_ids.append(uid)
            done.append(uid)
    assert sorted(done) == sorted(set(done))


# --- basic shapes -------------------------------------------------------------------------------


def test_silence_gives_no_events() -> None:
    d = make()
    d.feed(silence(5.0))
    d.finish()
    assert d.events == []
    assert d.session.idle
    assert d.session.buffered_s == 0.0


def test_one_utterance() -> None:
    d = make()
    d.feed(join(silence(1.0), tone(2.0), silence(1.5)))
    kinds = [type(e).__name__ for e in d.events if not isinstance(e, DecodeRequest)]
    assert kinds[0] == "SpeechStarted"
    assert kinds[-2:] == ["SpeechStopped", "Final"]
    assert set(kinds[1:-2]) == {"Partial"} and len(kinds[1:-2]) >= 3
    check_invariants(d.events)

    (started,) = d.of(SpeechStarted)
    (stopped,) = d.of(SpeechStopped)
    (final,) = d.finals()
    assert isinstance(started, SpeechStarted) and isinstance(stopped, SpeechStopped)
    assert abs(started.start_s - 1.0) <= FRAME_S
    assert abs(stopped.end_s - 3.0) <= FRAME_S
    assert (final.start_s, final.end_s) == (started.start_s, stopped.end_s)
    assert final.text.split() == [f"w{i}" for i in range(len(final.words))]
    assert len(final.words) >= 8
    # Word times are stream times: inside the utterance's audio (prefix and tail padding included).
    assert final.words[0].start_s >= started.start_s - 0.3 - 1e-9
    assert final.words[-1].end_s <= stopped.end_s + 0.2 + 0.25
    assert all(a.end_s <= b.start_s + 1e-9 for a, b in zip(final.words, final.words[1:], strict=False))
    # Partials cover the utterance so far and their committed text grows.
    partials = [e for e in d.events if isinstance(e, Partial)]
    assert partials[-1].committed_text
    assert all(p.start_s == started.start_s and p.end_s <= stopped.end_s + FRAME_S for p in partials)
    assert len(d.final_requests()) == 1
    # The request carries the prefix padding.
    request = d.final_requests()[0]
    assert abs(request.start_s - (started.start_s - 0.3)) < 1e-6
    d.finish()
    assert len(d.finals()) == 1


def test_many_utterances_in_order() -> None:
    d = make(delay=2)
    pattern = [(0.6 + 0.1 * i, 0.8) for i in range(6)]
    audio = join(silence(0.5), *[join(tone(s), silence(q)) for s, q in pattern])
    d.feed(audio)
    d.finish()
    check_invariants(d.events)
    finals = d.finals()
    assert [f.utterance_id for f in finals] == [1, 2, 3, 4, 5, 6]
    t = 0.5
    for (speech_s, quiet_s), final in zip(pattern, finals, strict=True):
        assert abs(final.start_s - t) <= FRAME_S
        assert abs(final.end_s - (t + speech_s)) <= FRAME_S
        assert final.text
        t += speech_s + quiet_s


def test_short_blips_are_ignored() -> None:
    d = make()
    blip = join(tone(0.06), silence(0.44))  # 60 ms of sound: under min_speech_ms (150)
    d.feed(join(*[blip] * 10))
    d.finish()
    assert d.events == []


def test_speech_just_over_min_speech_counts() -> None:
    d = make()
    d.feed(join(silence(frames(10)), tone(frames(5)), silence(1.0)))
    d.finish()
    assert len(d.finals()) == 1


def test_feed_sizes_do_not_matter() -> None:
    audio = join(silence(0.7), tone(1.3), silence(0.9), tone(0.8), silence(1.0))
    results = []
    for chunk in (1, 37, 512, 1000, audio.size):
        # Without earlier speech heard again: whether the second final hears the first depends on
        # whether the first was out when the second was asked for (with one feed, it was not).
        d = make(SessionConfig(partial_interval_ms=0, context_audio_s=0))
        d.feed(audio, chunk)
        d.finish()
        results.append([(f.start_s, f.end_s, f.text) for f in d.finals()])
    assert all(r == results[0] for r in results)
    assert len(results[0]) == 2


def test_feed_rejects_stereo() -> None:
    session = StreamingSession(SessionConfig(), FakeVad())
    with pytest.raises(ValueError, match="1-D"):
        session.feed(np.zeros((2, 100), dtype=np.float32))


# --- long speech --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dip_s", "config"),
    [(25.0, SessionConfig()), (20.0, SessionConfig(cut_search_s=10.0))],
    ids=["dip-in-default-window", "dip-at-20s-wider-window"],
)
def test_long_speech_is_cut_at_the_quietest_point(dip_s: float, config: SessionConfig) -> None:
    d = make(config)
    start = 0.5
    speech = join(tone(dip_s - start), silence(0.2), tone(start + 40.0 - dip_s - 0.2))
    d.feed(join(silence(start), speech, silence(1.0)))
    d.finish()
    check_invariants(d.events)
    first, second = d.finals()
    assert (first.utterance_id, second.utterance_id) == (1, 2)
    assert abs(first.start_s - start) <= FRAME_S
    assert abs(first.end_s - dip_s) <= FRAME_S  # cut inside the dip
    assert abs(second.start_s - (dip_s + 0.2)) <= FRAME_S
    assert abs(second.end_s - (start + 40.0)) <= FRAME_S
    # The cut came before Whisper's 30 s window was full, and no request is longer than that.
    cut_at = next(t for e, t in zip(d.events, d.at, strict=True) if isinstance(e, SpeechStopped))
    assert cut_at < 30.0
    assert max(r.audio.size for r in d.requests) <= 28.0 * SR + 2 * FRAME
    # The dip's speculative final was dropped when speech resumed: two Finals only.
    assert len(d.finals()) == 2


def test_long_speech_without_any_pause_is_cut_at_the_limit() -> None:
    d = make()
    d.feed(join(silence(0.5), tone(40.0), silence(1.0)))
    d.finish()
    check_invariants(d.events)
    first, second = d.finals()
    # The buffer (0.3 s of prefix included) reaches 28 s at 28.2 s; the last frame goes to part two.
    assert 28.2 - 2 * FRAME_S <= first.end_s <= 28.2
    assert second.start_s == first.end_s
    assert abs(second.end_s - 40.5) <= FRAME_S
    assert max(r.audio.size for r in d.requests) <= 28.0 * SR + 2 * FRAME


# --- speculative finals -------------------------------------------------------------------------


def test_speculative_final_is_requested_at_silence_onset_and_used() -> None:
    d = make()
    d.feed(join(silence(frames(16)), tone(frames(32))), FRAME)
    assert not d.final_requests()
    speech_end = frames(48)
    silent_frames = 0
    while not d.finals():
        silent_frames += 1
        events = d.feed(silence(frames(1)), FRAME)
        if silent_frames == 1:
            # The final decode went out on the first silent frame, long before min_silence_ms.
            assert [r.kind for r in d.final_requests()] == ["final"]
            assert any(isinstance(e, DecodeRequest) and e.kind == "final" for e in events)
        if d.finals():
            assert [type(e) for e in events] == [SpeechStopped, Final]
    # The Final came out exactly when min_silence_ms (500 ms → 16 frames) of silence had been fed.
    assert silent_frames == 16
    assert d.fed / SR - speech_end >= 0.5
    assert len(d.final_requests()) == 1
    (final,) = d.finals()
    assert final.end_s == speech_end
    # The speculative request heard the speech plus the one silent frame.
    request = d.final_requests()[0]
    assert request.audio.size == round((0.3 + frames(33)) * SR)
    check_invariants(d.events)


def test_speculative_result_after_the_silence_window_becomes_the_final() -> None:
    d = make(SessionConfig(partial_interval_ms=0), delay=None)
    d.feed(join(silence(0.5), tone(1.0), silence(0.1)))
    assert d.outstanding is not None and d.outstanding.kind == "final"
    d.feed(silence(1.0))
    assert isinstance([e for e in d.events if not isinstance(e, Lag)][-1], SpeechStopped)
    events = d.answer()
    assert [type(e) for e in events] == [Final]
    assert len(d.final_requests()) == 1
    assert d.session.idle


@pytest.mark.parametrize("mode", ["answered", "in-flight", "queued"])
def test_speech_resuming_drops_the_speculative_result(mode: str) -> None:
    # answered: its result is already in; in-flight: it comes after speech resumed; queued: a
    # partial held the slot (without preemption), so the speculative request never went out at all.
    config = SessionConfig(
        partial_interval_ms=0 if mode == "in-flight" else 500, preempt_partials=mode != "queued"
    )
    d = make(config, delay=0 if mode == "answered" else None)
    d.feed(join(silence(frames(16)), tone(frames(32)), silence(frames(6))), FRAME)
    if mode == "queued":
        assert d.outstanding is not None and d.outstanding.kind == "partial"
        assert not d.final_requests()
    else:
        assert len(d.final_requests()) == 1
    early = list(d.final_requests())
    d.feed(tone(frames(32)), FRAME)  # speech resumes after 192 ms
    if mode == "in-flight":
        assert d.outstanding is early[0]
        assert d.answer() == []  # ignored
    while d.outstanding is not None:
        d.answer()
    d.delay = 0
    assert not d.finals()
    d.feed(silence(1.0), FRAME)
    d.finish()
    check_invariants(d.events)
    (final,) = d.finals()
    assert final.start_s == frames(16)
    assert final.end_s == frames(16 + 32 + 6 + 32)
    (last_request,) = [r for r in d.final_requests() if r not in early]
    assert final.text == text_of(word_decoder(last_request))
    assert all(len(final.text.split()) > len(text_of(word_decoder(r)).split()) for r in early)


def test_without_speculation_the_final_is_requested_after_min_silence() -> None:
    d = make(SessionConfig(speculative_final=False))
    d.feed(join(silence(frames(16)), tone(frames(32))), FRAME)
    d.feed(silence(frames(15)), FRAME)
    assert not d.final_requests()
    d.feed(silence(frames(1)), FRAME)
    (request,) = d.final_requests()
    # It carries the full tail padding (200 ms).
    assert request.audio.size == round((0.3 + frames(32) + 0.2) * SR)
    assert len(d.finals()) == 1


# --- the decode-slot invariants -----------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    layout=st.lists(
        st.tuples(st.floats(0.02, 2.0), st.floats(0.05, 1.5)),
        min_size=1,
        max_size=5,
    ),
    chunks=st.lists(st.integers(1, 4000), min_size=1, max_size=6),
    delay=st.integers(0, 6),
    speculative=st.booleans(),
    partial_interval_ms=st.sampled_from([0, 100, 500]),
    first_partial_ms=st.sampled_from([0, 100, 300]),
    preempt=st.booleans(),
    newest_first=st.booleans(),
)
def test_decode_limits_and_one_final_per_utterance(
    layout: list[tuple[float, float]],
    chunks: list[int],
    delay: int,
    speculative: bool,
    partial_interval_ms: int,
    first_partial_ms: int,
    preempt: bool,
    newest_first: bool,
) -> None:
    config = SessionConfig(
        speculative_final=speculative,
        partial_interval_ms=partial_interval_ms,
        first_partial_ms=first_partial_ms,
        preempt_partials=preempt,
    )
    # The Driver asserts at most one partial and one final outstanding (one decode without preempt).
    d = make(config, delay=delay, newest_first=newest_first)
    audio = join(silence(0.3), *[join(tone(s), silence(q)) for s, q in layout])
    d.feed(audio, chunks)
    d.finish()
    check_invariants(d.events)
    started = [e.utterance_id for e in d.events if isinstance(e, SpeechStarted)]
    finals = [f.utterance_id for f in d.finals()]
    assert finals == started
    assert not d.of(UtteranceFailed)
    # Clearly separated utterances are found one for one.
    if all(s >= 0.2 and q >= 0.6 for s, q in layout):
        assert len(finals) == len(layout)
    assert d.most_pending <= (2 if preempt else 1)
    if not (partial_interval_ms and first_partial_ms):
        assert all(r.kind == "final" for r in d.requests)


# --- partials preempted by finals, the first partial -------------------------------------------


def speech_then_partial(config: SessionConfig) -> Driver:
    """An utterance under way (from 0.512 s) with a partial decode outstanding and unanswered."""
    d = make(config, delay=None)
    d.feed(join(silence(frames(16)), tone(frames(32))), FRAME)
    assert [r.kind for r in d.pending] == ["partial"]
    return d


@pytest.mark.parametrize("preempt", [True, False])
def test_a_speculative_final_preempts_a_partial_in_flight(preempt: bool) -> None:
    d = speech_then_partial(SessionConfig(preempt_partials=preempt))
    (partial,) = d.pending
    events = d.feed(silence(frames(1)), FRAME)  # silence begins: the speculative final is due
    if not preempt:
        assert events == [] and d.pending == [partial]
        events = d.answer()
        assert [type(e) for e in events] == [Partial, DecodeRequest]
        (final_request,) = d.final_requests()
        d.answer()
    else:
        (final_request,) = events  # out at once, the partial still running
        assert isinstance(final_request, DecodeRequest) and final_request.kind == "final"
        assert d.pending == [partial, final_request]
        assert d.session.lag_s == 0.0  # the final is the decode in flight now
        assert d.answer(final_request) == []  # speculative: kept until the silence has lasted
        assert d.session.idle  # the abandoned partial does not count
    events = d.feed(silence(0.6), FRAME)
    assert [type(e) for e in events] == [SpeechStopped, Final]
    if preempt:
        assert d.answer(partial) == []  # after the Final: still ignored
        assert not d.of(Partial)
    assert d.session.idle
    check_invariants(d.events)
    (final,) = d.finals()
    assert final.text == text_of(word_decoder(final_request))


@pytest.mark.parametrize("outcome", ["result", "failure"])
def test_an_abandoned_partial_frees_nothing_and_shows_only_its_words(outcome: str) -> None:
    d = speech_then_partial(SessionConfig())
    (partial,) = d.pending
    (final_request,) = d.feed(silence(frames(1)), FRAME)
    lag = d.session.lag_s
    late = d.answer(partial) if outcome == "result" else d.fail(partial)
    if outcome == "result":
        # The speaker only paused: the words it decoded show now, not after the final's decode too.
        (shown,) = late
        assert isinstance(shown, Partial) and shown.utterance_id == 1
        assert shown.tentative_text == text_of(word_decoder(partial))
    else:
        assert late == []
    assert not d.session.idle and d.session.lag_s == lag  # the final still holds the slot
    assert d.pending == [final_request]
    # Answering it again, or the final's id via the wrong path, changes nothing either.
    assert d.session.on_decode_result(partial.request_id, []) == []
    assert d.session.on_decode_failed(partial.request_id) == []
    d.delay = 0
    d.feed(silence(1.0), FRAME)
    d.finish()
    check_invariants(d.events)
    assert len(d.of(Partial)) == (1 if outcome == "result" else 0)
    assert [f.utterance_id for f in d.finals()] == [1]


def test_an_abandoned_partial_answered_after_a_newer_one_is_not_shown() -> None:
    d = speech_then_partial(SessionConfig())
    (partial,) = d.pending
    (speculative,) = d.feed(silence(frames(1)), FRAME)
    assert d.answer(speculative) == []
    d.feed(tone(frames(1)), FRAME)  # speech resumes: the speculative final's words show as a partial
    (newer,) = d.of(Partial)
    assert d.answer(partial) == []  # older audio than what is shown: dropped
    assert d.of(Partial) == [newer]
    d.delay = 0
    d.feed(silence(1.0), FRAME)
    d.finish()
    check_invariants(d.events)


def test_no_partial_while_an_abandoned_one_is_outstanding() -> None:
    d = speech_then_partial(SessionConfig())
    (partial,) = d.pending
    (speculative,) = d.feed(silence(frames(1)), FRAME)
    assert d.answer(speculative) == []
    dropped = d.session.dropped_partials
    d.feed(tone(1.0), FRAME)  # speech resumes: partials are due, but one is still running
    assert d.pending == [partial]
    assert d.session.dropped_partials > dropped
    assert d.answer(partial) == []  # ignored, requests nothing by itself
    (request,) = d.feed(tone(frames(1)), FRAME)  # the next frame sends the overdue partial
    assert isinstance(request, DecodeRequest) and request.kind == "partial"
    d.answer()
    d.delay = 0
    d.feed(silence(1.0), FRAME)
    d.finish()
    check_invariants(d.events)
    # Two partials: the speculative final's answer (shown when speech resumed), then the real one.
    first, second = d.of(Partial)
    assert first.tentative_text and second.end_s > first.end_s
    assert len(d.finals()) == 1


def test_a_speculative_final_that_speech_overtakes_becomes_a_partial() -> None:
    """Speech with short pauses (digits, lists): each pause's early final would take the decode slot
    from the partials and be dropped, showing nothing until the end; its answer is a partial instead."""
    d = make(SessionConfig(), delay=None)
    d.feed(join(silence(frames(16)), tone(frames(8)), silence(frames(4))), FRAME)
    (speculative,) = d.final_requests()
    assert d.outstanding is speculative
    d.feed(tone(frames(4)), FRAME)  # speech resumes before the silence ends the utterance
    # The early final's text, as a partial of the utterance that goes on (a fresh partial may follow).
    (partial,) = [e for e in d.answer(speculative) if isinstance(e, Partial)]
    assert partial.tentative_text == text_of(word_decoder(speculative))
    d.delay = 0
    d.feed(silence(1.0), FRAME)
    d.finish()
    check_invariants(d.events)
    (final,) = d.finals()
    assert final.end_s == frames(16 + 8 + 4 + 4)


def test_manual_the_next_pause_does_not_wait_for_an_overtaken_early_final() -> None:
    """A decode takes ~0.7 s on two cores: at every short pause the next early final would wait for
    the last one's (now only a partial), and the commit for them all."""
    d = manual(speculation_ms=64, partials=False, delay=None)
    d.feed(join(silence(frames(16)), tone(frames(8)), silence(frames(2))), FRAME)
    (overtaken,) = d.final_requests()
    d.feed(join(tone(frames(8)), silence(frames(2))), FRAME)  # speech resumes, then pauses again
    second = [r for r in d.final_requests() if r is not overtaken]
    assert len(second) == 1 and d.pending == [overtaken, second[0]]  # out at once, not queued
    assert d.answer(overtaken) == []  # preempted like a partial: its answer is ignored
    d.feed(silence(0.5), FRAME)
    d.take(d.session.commit())
    d.answer(second[0])
    check_invariants(d.events)
    (final,) = d.finals()
    assert final.text == text_of(word_decoder(second[0]))
    assert final.end_s == frames(16 + 8 + 2 + 8 + 2) + 0.5  # the commit


def test_a_final_never_preempts_a_final() -> None:
    d = make(SessionConfig(partial_interval_ms=0, finals_ahead=False), delay=None)
    d.feed(join(silence(0.5), tone(1.0), silence(0.7), tone(1.0), silence(0.7)))
    (first,) = d.final_requests()  # the second utterance's final waits for the first's
    assert d.pending == [first]
    final, request = d.answer()
    assert isinstance(final, Final) and final.utterance_id == 1
    assert isinstance(request, DecodeRequest) and request.kind == "final"
    d.answer()
    assert [f.utterance_id for f in d.finals()] == [1, 2]


def test_commit_while_a_partial_is_in_flight_sends_the_final_at_once() -> None:
    d = make(delay=None)
    d.feed(join(silence(0.5), tone(1.0)))
    (partial,) = d.pending
    events = d.take(d.session.commit())
    assert [type(e) for e in events] == [SpeechStopped, DecodeRequest]
    final_request = events[1]
    assert isinstance(final_request, DecodeRequest) and final_request.kind == "final"
    assert [type(e) for e in d.answer(final_request)] == [Final]
    assert d.answer(partial) == []
    assert d.session.idle
    check_invariants(d.events)


def test_a_cleared_utterances_partial_is_preempted_too() -> None:
    # A cleared utterance's partial is cancelled; a later final still need not wait for it.
    d = make(delay=None)
    d.feed(join(silence(0.5), tone(1.0)))
    (partial,) = d.pending
    d.take(d.session.clear())
    d.feed(join(silence(0.5), tone(0.5)))
    assert d.pending == [partial]  # no partial while the slot is held
    events = d.take(d.session.commit())
    assert [type(e) for e in events] == [SpeechStopped, DecodeRequest]
    assert len(d.pending) == 2
    d.answer()  # the old partial: ignored
    d.answer()
    check_invariants(d.events)
    assert [f.utterance_id for f in d.finals()] == [2]


def partial_times(config: SessionConfig) -> list[float]:
    """Stream times (s after the utterance start at 0.512 s) of the partial requests, decoder instant."""
    d = make(config)
    d.feed(join(silence(frames(16)), tone(frames(60))), FRAME)
    return [t - frames(16) for e, t in zip(d.events, d.at, strict=True) if isinstance(e, DecodeRequest)]


def test_the_first_partial_comes_after_first_partial_ms() -> None:
    # 300 ms = 9.4 frames: the 10th frame; then every 500 ms (15.6 frames: 16 frames).
    assert partial_times(SessionConfig()) == pytest.approx([frames(n) for n in (10, 26, 42, 58)])
    old = SessionConfig(first_partial_ms=500)  # = partial_interval_ms: the cadence before
    assert partial_times(old) == pytest.approx([frames(n) for n in (16, 32, 48)])
    # 100 ms is before the speech is confirmed (min_speech_ms, 5 frames): it goes out then.
    fast = SessionConfig(first_partial_ms=100, partial_interval_ms=300)
    assert partial_times(fast) == pytest.approx([frames(n) for n in (5, 15, 25, 35, 45, 55)])
    assert partial_times(SessionConfig(first_partial_ms=0)) == []
    assert partial_times(SessionConfig(partial_interval_ms=0, first_partial_ms=300)) == []


def test_the_first_partial_carries_the_utterance_so_far() -> None:
    d = make(SessionConfig(), delay=None)
    d.feed(join(silence(frames(16)), tone(frames(10))), FRAME)
    (request,) = d.requests
    assert request.kind == "partial"
    assert request.audio.size == round(0.3 * SR) + 10 * FRAME
    assert request.start_s == pytest.approx(frames(16) - 0.3)


def test_first_partial_ms_zero_disables_partials() -> None:
    d = make(SessionConfig(first_partial_ms=0))
    d.feed(join(silence(0.5), tone(2.0), silence(1.0)))
    assert [r.kind for r in d.requests] == ["final"]
    assert not d.of(Partial) and d.session.dropped_partials == 0


# --- commit, clear, finish ----------------------------------------------------------------------


def test_commit_mid_speech_ends_the_turn() -> None:
    d = make()
    d.feed(join(silence(0.5), tone(1.0)))
    events = d.take(d.session.commit())
    assert [type(e) for e in events] == [SpeechStopped, DecodeRequest]
    stopped = events[0]
    assert isinstance(stopped, SpeechStopped) and stopped.end_s == 1.5
    d.tick()
    (final,) = d.finals()
    assert final.end_s == 1.5
    # Speech goes on: a new utterance starts right after the commit point.
    d.feed(join(tone(1.0), silence(1.0)))
    d.finish()
    check_invariants(d.events)
    first, second = d.finals()
    assert second.utterance_id == 2
    assert abs(second.start_s - 1.5) <= FRAME_S
    assert abs(second.end_s - 2.5) <= FRAME_S


def test_commit_while_a_partial_is_in_flight_queues_the_final_without_preemption() -> None:
    d = make(SessionConfig(preempt_partials=False), delay=None)
    d.feed(join(silence(0.5), tone(1.0)))
    assert d.outstanding is not None and d.outstanding.kind == "partial"
    events = d.take(d.session.commit())
    assert [type(e) for e in events] == [SpeechStopped]
    events = d.answer()  # the partial is stale now; the queued final goes out
    assert len(events) == 1 and isinstance(events[0], DecodeRequest) and events[0].kind == "final"
    d.answer()
    assert len(d.finals()) == 1
    check_invariants(d.events)


def test_commit_between_utterances_does_nothing() -> None:
    d = make()
    d.feed(silence(1.0))
    assert d.session.commit() == []


def test_commit_confirms_a_short_start() -> None:
    d = make()
    d.feed(join(silence(0.5), tone(frames(2))), FRAME)
    events = d.take(d.session.commit())
    assert [type(e) for e in events] == [SpeechStarted, SpeechStopped, DecodeRequest]


def test_manual_commit_mode_without_vad() -> None:
    session = StreamingSession(SessionConfig(vad_threshold=None))
    d = Driver(session)
    d.feed(join(tone(1.0), silence(1.0), tone(1.0)), 1000)
    assert [type(e) for e in d.events if not isinstance(e, DecodeRequest | Partial)] == [SpeechStarted]
    assert session.buffered_s == 3.0
    d.take(session.commit())
    assert session.buffered_s == 0.0
    request = d.final_requests()[0]
    assert (request.start_s, request.audio.size) == (0.0, 3 * SR)  # every sample since the start
    d.tick()
    d.feed(tone(0.5), 1000)
    d.take(session.commit())
    d.tick()
    check_invariants(d.events)
    first, second = d.finals()
    assert (first.start_s, first.end_s) == (0.0, 3.0)
    assert (second.start_s, second.end_s) == (3.0, 3.5)
    assert session.commit() == []


def test_manual_mode_cuts_long_audio_at_the_quietest_frame() -> None:
    session = StreamingSession(SessionConfig(vad_threshold=None, max_utterance_s=10.0, cut_search_s=3.0))
    d = Driver(session)
    d.feed(join(tone(frames(250)), tone(frames(4), amplitude=0.01), tone(frames(100))), 4000)
    d.take(session.commit())
    d.tick()
    first, second = d.finals()
    assert first.end_s == second.start_s
    assert frames(250) <= first.end_s <= frames(253)  # inside the quiet run
    assert second.end_s == frames(354)


def manual(speculation_ms: int = 320, *, partials: bool = True, **driver: object) -> Driver:
    """Manual commits (no server VAD) with a VAD that only makes speculative finals."""
    config = SessionConfig(
        vad_threshold=None, commit_speculation_ms=speculation_ms, partial_interval_ms=500 if partials else 0
    )
    return Driver(StreamingSession(config, FakeVad()), **driver)  # type: ignore[arg-type]


def test_manual_commit_after_a_pause_uses_the_decode_made_during_the_pause() -> None:
    d = manual()
    d.feed(join(silence(frames(8)), tone(frames(32))), FRAME)
    assert not d.final_requests()
    d.feed(silence(frames(9)), FRAME)  # 288 ms: not yet
    assert not d.final_requests()
    d.feed(silence(frames(1)), FRAME)  # 320 ms of silence after speech: decode what was heard
    (early,) = d.final_requests()
    assert early.audio.size == frames(8 + 32 + 10) * SR
    assert not d.finals()  # no event depends on our VAD: the client commits
    d.feed(silence(frames(12)), FRAME)
    events = d.take(d.session.commit())
    # The answer is already in: the commit gives the Final at once, and no second decode.
    assert [type(e) for e in events] == [SpeechStopped, Final]
    assert d.final_requests() == [early]
    (final,) = d.finals()
    assert final.text == text_of(word_decoder(early))
    assert (final.start_s, final.end_s) == (0.0, frames(8 + 32 + 10 + 12))  # the item ends at the commit
    assert d.session.early_finals == (1, 0)
    check_invariants(d.events)


def test_manual_commit_while_the_early_decode_runs_waits_for_it() -> None:
    d = manual(delay=None)
    d.feed(join(tone(frames(32)), silence(frames(12))), FRAME)
    (early,) = d.final_requests()
    events = d.take(d.session.commit())
    assert [type(e) for e in events] == [SpeechStopped]
    assert [type(e) for e in d.answer(early)] == [Final]
    assert d.final_requests() == [early]
    (final,) = d.finals()
    assert final.end_s == frames(44)
    assert d.session.idle


def test_manual_speech_after_the_pause_drops_the_early_decode() -> None:
    d = manual(delay=None)
    d.feed(join(tone(frames(32)), silence(frames(12))), FRAME)
    (early,) = d.final_requests()
    d.feed(tone(frames(16)), FRAME)  # the speaker goes on before committing
    assert [type(e) for e in d.answer(early)] == [Partial]  # its answer is shown, not final
    d.take(d.session.commit())
    late = [r for r in d.final_requests() if r is not early]
    assert len(late) == 1 and late[0].audio.size == frames(60) * SR
    d.answer(late[0])
    (final,) = d.finals()
    assert final.text == text_of(word_decoder(late[0]))
    assert len(final.text.split()) > len(text_of(word_decoder(early)).split())
    assert d.session.early_finals == (0, 1)
    check_invariants(d.events)


def test_manual_speculation_needs_speech_and_can_be_off() -> None:
    quiet = manual()
    quiet.feed(silence(2.0), FRAME)  # nothing heard: nothing to decode ahead
    assert not quiet.final_requests()
    off = manual(speculation_ms=0)
    off.feed(join(tone(1.0), silence(1.0)), FRAME)
    assert not off.final_requests()
    off.take(off.session.commit())
    assert len(off.final_requests()) == 1
    # Without the setting the VAD is not even run.
    vad = FakeVad()
    StreamingSession(SessionConfig(vad_threshold=None), vad).feed(tone(1.0))
    assert vad.frames == 0


def test_manual_asks_for_no_partial_of_silence() -> None:
    # Between a client's turns the session hears only silence: its partials were "" or the prompt
    # made up again, and they kept a worker busy that the next early final needed.
    d = manual()
    d.feed(silence(2.0), FRAME)
    assert not [r for r in d.requests if r.kind == "partial"]  # nothing heard yet
    d.feed(tone(1.5), FRAME)
    during = [r for r in d.requests if r.kind == "partial"]
    assert during  # speech: partials as usual
    d.feed(silence(3.0), FRAME)
    after = [r for r in d.requests if r.kind == "partial"]
    # None in the pause: the early final is the next decode there (and has the last words).
    assert len(after) == len(during)
    assert len(d.final_requests()) == 1
    assert d.session.dropped_partials == 0  # skipped, not dropped: nothing was lost
    d.feed(tone(1.5), FRAME)
    assert len([r for r in d.requests if r.kind == "partial"]) > len(after)  # speech again
    check_invariants(d.events)


def test_manual_mode_requires_no_vad_but_vad_mode_does() -> None:
    with pytest.raises(ValueError, match="VAD"):
        StreamingSession(SessionConfig())


def test_clear_cancels_the_current_utterance() -> None:
    d = make(delay=None)
    d.feed(join(silence(0.5), tone(1.0)))
    partial = d.outstanding
    assert partial is not None and partial.kind == "partial"
    events = d.take(d.session.clear())
    assert [type(e) for e in events] == [UtteranceFailed]
    assert isinstance(events[0], UtteranceFailed) and events[0].reason == "cleared"
    assert d.session.buffered_s == 0.0
    assert not d.session.idle  # the cancelled decode still holds the slot until it returns
    assert d.answer() == []
    assert d.session.idle
    d.delay = 0
    d.feed(join(silence(0.5), tone(1.0), silence(1.0)))
    d.finish()
    check_invariants(d.events)
    assert [f.utterance_id for f in d.finals()] == [2]
    assert not any(isinstance(e, Partial) and e.utterance_id == 1 for e in d.events)


def test_clear_drops_a_speculative_final_in_flight() -> None:
    d = make(SessionConfig(partial_interval_ms=0), delay=None)
    d.feed(join(silence(0.5), tone(1.0), silence(0.2)))
    assert d.outstanding is not None and d.outstanding.kind == "final"
    d.take(d.session.clear())
    assert d.answer() == []
    d.feed(silence(1.0))
    d.finish()
    assert d.finals() == []


def test_clear_keeps_finals_of_ended_utterances() -> None:
    d = make(delay=None)
    d.feed(join(silence(0.5), tone(1.0), silence(1.0), tone(1.0)))
    d.take(d.session.clear())
    d.finish()
    check_invariants(d.events)
    assert [f.utterance_id for f in d.finals()] == [1]


def test_finish_flushes_the_last_final() -> None:
    d = make()
    d.feed(join(silence(0.5), tone(1.0)), 1000)  # 1.5 s is not a whole number of frames
    events = d.take(d.session.finish())
    assert [type(e) for e in events] == [SpeechStopped, DecodeRequest]
    assert isinstance(events[0], SpeechStopped) and events[0].end_s == 1.5
    assert not d.session.idle
    d.answer()
    assert d.session.idle
    (final,) = d.finals()
    assert final.end_s == 1.5


def test_finish_uses_a_speculative_result_already_in() -> None:
    d = make()
    d.feed(join(silence(0.5), tone(1.0), silence(0.2)))
    events = d.take(d.session.finish())
    assert [type(e) for e in events] == [SpeechStopped, Final]
    assert d.session.idle
    assert len(d.final_requests()) == 1


def test_finish_drops_an_unconfirmed_blip() -> None:
    d = make()
    d.feed(join(silence(0.5), tone(frames(2))), FRAME)
    assert d.session.finish() == []


# --- backpressure, failures, limits -------------------------------------------------------------


def test_lag_events_when_results_are_withheld() -> None:
    d = make(delay=None)
    d.feed(join(silence(0.5), tone(5.0)))
    (partial,) = d.requests  # one decode is out and never answered
    lags = [(e, t) for e, t in zip(d.events, d.at, strict=True) if isinstance(e, Lag)]
    assert 3 <= len(lags) <= 5
    assert all(e.lag_s > 1.0 for e, _ in lags)
    assert all(b - a >= 1.0 - 0.1 for (_, a), (_, b) in zip(lags, lags[1:], strict=False))
    dropped = [e.dropped_partials for e, _ in lags]
    assert dropped == sorted(dropped) and dropped[-1] >= 5
    assert d.session.lag_s == pytest.approx(5.5 - partial.start_s - partial.audio.size / SR, abs=0.1)
    assert d.session.dropped_partials >= dropped[-1]
    # Once the decode returns, a fresh partial goes out at once (it is overdue) and lag resets.
    events = d.answer()
    assert [type(e) for e in events] == [Partial, DecodeRequest]
    assert d.session.lag_s == 0.0


def test_no_lag_events_when_the_decoder_keeps_up() -> None:
    d = make(delay=3)
    d.feed(join(silence(0.5), tone(5.0), silence(1.0)))
    assert not d.of(Lag)


def test_backlog_beyond_max_buffer_raises() -> None:
    d = make(SessionConfig(max_buffer_s=29.0), delay=None)
    utterance = join(tone(1.0), silence(1.0))
    with pytest.raises(Unavailable) as caught:
        for _ in range(40):
            d.feed(utterance)
    assert caught.value.code == "transcription_backlog"
    held = sum(r.audio.size for r in d.requests)
    assert held < 40 * SR


def test_a_failed_final_is_retried_once_then_reported() -> None:
    d = make(SessionConfig(partial_interval_ms=0), delay=None)
    d.feed(join(silence(0.5), tone(1.0), silence(1.0)))
    first = d.outstanding
    assert first is not None and first.kind == "final"
    events = d.fail()
    assert len(events) == 1 and isinstance(events[0], DecodeRequest)
    assert events[0].kind == "final" and events[0].audio is first.audio
    events = d.fail()
    assert [type(e) for e in events] == [UtteranceFailed]
    assert isinstance(events[0], UtteranceFailed) and events[0].reason == "decode_failed"
    assert d.session.idle
    check_invariants(d.events)


def test_a_failed_speculative_final_is_replaced_at_the_end() -> None:
    d = make(SessionConfig(partial_interval_ms=0), delay=None)
    d.feed(join(silence(0.5), tone(1.0), silence(0.1)))
    assert d.fail() == []
    d.feed(silence(1.0))
    assert d.outstanding is not None and d.outstanding.kind == "final"
    d.answer()
    assert len(d.finals()) == 1


def test_a_failed_partial_is_skipped() -> None:
    d = make(delay=None)
    d.feed(join(silence(0.5), tone(1.2)))
    (first,) = d.requests
    # No Partial comes of it; another partial is overdue, so it goes out at once.
    (request,) = d.fail()
    assert isinstance(request, DecodeRequest) and request.kind == "partial"
    assert request.audio.size > first.audio.size
    assert not d.of(Partial)


def test_unknown_results_are_ignored() -> None:
    session = StreamingSession(SessionConfig(), FakeVad())
    assert session.on_decode_result(99, []) == []
    assert session.on_decode_failed(99) == []


def test_no_partials_without_interim_results() -> None:
    d = make(SessionConfig(interim_results=False))
    d.feed(join(silence(0.5), tone(3.0), silence(1.0)))
    assert [r.kind for r in d.requests] == ["final"]
    assert not d.of(Partial)
    assert d.session.dropped_partials == 0


def test_partials_follow_local_agreement() -> None:
    scripted = iter(["to be", "to be or", "to be or not", "to be or not to", "to be or not to be"])

    def decode(request: DecodeRequest) -> list[Segment]:
        text = next(scripted) if request.kind == "partial" else "To be, or not to be."
        return [Segment(0, 0.0, 1.0, text)]

    d = make(SessionConfig(partial_interval_ms=300), decode=decode)
    d.feed(join(silence(0.5), tone(1.7), silence(1.0)))
    partials = [e for e in d.events if isinstance(e, Partial)]
    assert [(p.committed_text, p.tentative_text) for p in partials] == [
        ("", "to be"),
        ("to be", "or"),
        ("to be or", "not"),
        ("to be or not", "to"),
        ("to be or not to", "be"),
    ]
    assert partials[0].stability < partials[1].stability
    (final,) = d.finals()
    assert final.text == "To be, or not to be."


@pytest.mark.parametrize(
    ("segments", "expected"),
    [
        # Weighted by duration: 1 s at 0.9 and 3 s at 0.5.
        ([Segment(0, 0.0, 1.0, " One.", confidence=0.9), Segment(1, 1.0, 4.0, " Two.", confidence=0.5)], 0.6),
        ([Segment(0, 0.0, 2.0, " Sure.", confidence=1.0)], 1.0),
        # A segment without text or without a confidence does not count.
        ([Segment(0, 0.0, 1.0, " Yes.", confidence=0.8), Segment(1, 1.0, 9.0, "  ", confidence=0.1)], 0.8),
        ([Segment(0, 0.0, 1.0, " Yes.", confidence=0.8), Segment(1, 1.0, 9.0, " no")], 0.8),
        # Zero-length segments: a plain mean.
        ([Segment(0, 1.0, 1.0, " a", confidence=0.2), Segment(1, 1.0, 1.0, " b", confidence=0.4)], 0.3),
        # An engine that gives no confidence: 0.0, "not set".
        ([Segment(0, 0.0, 1.0, " Hello.")], 0.0),
    ],
)
def test_a_final_carries_the_duration_weighted_confidence_of_its_segments(
    segments: list[Segment], expected: float
) -> None:
    d = make(decode=lambda request: segments if request.kind == "final" else [])
    d.feed(join(silence(0.5), tone(1.0), silence(1.0)))
    (final,) = d.finals()
    assert final.confidence == pytest.approx(expected)


def test_prompt_carries_previous_finals() -> None:
    # A final that hears the earlier speech again is prompted with what came before that instead.
    d = make(SessionConfig(prompt="Glossary: voxserve.", context_audio_s=0))
    d.feed(join(silence(0.5), tone(1.0), silence(1.0), tone(1.0), silence(1.0)))
    first, second = d.final_requests()
    assert first.prompt == "Glossary: voxserve."
    assert second.prompt == "Glossary: voxserve. " + d.finals()[0].text


@pytest.mark.parametrize(("gap_s", "carried"), [(math.inf, True), (2.0, True), (1.5, False), (0.0, False)])
def test_previous_finals_reach_only_an_utterance_starting_within_the_context_gap(
    gap_s: float, carried: bool
) -> None:
    # The second utterance starts 1.75 s after the first one's speech ends (its Final's end_s).
    d = make(SessionConfig(prompt="Glossary.", context_max_gap_s=gap_s, context_audio_s=0))
    d.feed(join(silence(0.5), tone(1.0), silence(1.75), tone(1.0), silence(1.0)))
    first, second = d.final_requests()
    assert first.prompt == "Glossary."
    partials = [r for r in d.requests if r.kind == "partial" and r.utterance_id == second.utterance_id]
    expected = "Glossary. " + d.finals()[0].text if carried else "Glossary."
    assert second.prompt == expected and partials and all(r.prompt == expected for r in partials)


def test_utterance_buffer_is_bounded() -> None:
    session = StreamingSession(SessionConfig(), FakeVad())
    d = Driver(session)
    d.feed(tone(100.0), 16000)
    assert session.buffered_s <= 28.0 + 2 * FRAME_S
    assert len(d.finals()) == 3


@pytest.mark.parametrize(
    "kwargs",
    [
        {"vad_threshold": 1.5},
        {"min_silence_ms": -1},
        {"first_partial_ms": -1},
        {"max_utterance_s": 0.5},
        {"cut_search_s": 0.0},
        {"cut_search_s": 30.0},
        {"max_buffer_s": 10.0},
        {"sample_rate": 0},
    ],
)
def test_config_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each value has its own message
        SessionConfig(**kwargs)  # type: ignore[arg-type]


def committed_twice(**config: object) -> tuple[Driver, DecodeRequest, DecodeRequest]:
    """Manual commits, no partials: one second of speech committed, then half a second, with the
    decoder holding both answers."""
    session = StreamingSession(
        SessionConfig(vad_threshold=None, partial_interval_ms=0, context_audio_s=0, **config)  # type: ignore[arg-type]
    )
    d = Driver(session, delay=None)
    d.feed(tone(1.0))
    d.take(session.commit())
    d.feed(tone(0.5))
    d.take(session.commit())
    requests = d.final_requests()
    assert len(requests) == 2  # the second did not wait for the first
    return d, requests[0], requests[1]


def test_a_final_waiting_behind_a_final_is_decoded_beside_it_and_comes_out_after_it() -> None:
    d, first, second = committed_twice()
    assert d.pending == [first, second]
    assert second.prompt == ""  # the first's text is not known yet
    assert d.answer(second) == []  # held for its turn
    out = d.answer(first)
    assert [(type(e), getattr(e, "utterance_id", None)) for e in out] == [(Final, 1), (Final, 2)]
    assert d.session.idle
    check_invariants(d.events)


def test_without_finals_ahead_the_second_final_waits() -> None:
    session = StreamingSession(
        SessionConfig(vad_threshold=None, partial_interval_ms=0, finals_ahead=False, context_audio_s=0)
    )
    d = Driver(session, delay=None)
    d.feed(tone(1.0))
    d.take(session.commit())
    d.feed(tone(0.5))
    d.take(session.commit())
    (first,) = d.final_requests()
    out = d.answer(first)
    assert [type(e) for e in out] == [Final, DecodeRequest]
    assert out[1].prompt == text_of(word_decoder(first))  # type: ignore[union-attr]


def test_server_vad_utterances_back_to_back_are_decoded_side_by_side() -> None:
    d = make(SessionConfig(partial_interval_ms=0), delay=None, newest_first=True)
    d.feed(join(silence(0.5), tone(1.0), silence(0.7), tone(1.0), silence(0.7)))
    assert len(d.pending) == 2 and all(r.kind == "final" for r in d.pending)
    d.finish()
    assert [f.utterance_id for f in d.finals()] == [1, 2]
    check_invariants(d.events)


def test_a_final_decoded_ahead_that_fails_is_decoded_again_in_its_turn() -> None:
    d, first, second = committed_twice()
    assert d.fail(second) == []
    out = d.answer(first)
    assert [type(e) for e in out] == [Final, DecodeRequest]
    retry = out[1]
    assert isinstance(retry, DecodeRequest) and retry.utterance_id == 2
    assert retry.prompt == text_of(word_decoder(first))  # now it has the first's text
    assert [type(e) for e in d.answer(retry)] == [Final]
    assert [f.utterance_id for f in d.finals()] == [1, 2]
    check_invariants(d.events)


def test_the_final_ahead_comes_out_when_the_one_before_fails_for_good() -> None:
    d, first, second = committed_twice()
    d.answer(second)
    (retry,) = [e for e in d.fail(first) if isinstance(e, DecodeRequest)]
    assert retry.utterance_id == 1
    out = d.fail(retry)
    assert [type(e) for e in out] == [UtteranceFailed, Final]
    assert d.session.idle


# --- earlier speech heard again (context_audio_s) ----------------------------------------------------


def two_utterances(
    pause_s: float, **config: object
) -> tuple[Driver, DecodeRequest, DecodeRequest, FloatAudio]:
    """Speech from 0.5 to 1.5 s, ``pause_s`` of silence, one more second of speech."""
    d = make(SessionConfig(partial_interval_ms=0, prompt="Glossary.", **config))  # type: ignore[arg-type]
    audio = join(silence(0.5), tone(1.0), silence(pause_s), tone(1.0), silence(1.0))
    d.feed(audio)
    d.finish()
    first, second = d.final_requests()
    return d, first, second, audio


def test_a_final_hears_the_previous_final_again_and_keeps_only_its_own_words() -> None:
    d, first, second, audio = two_utterances(0.9)
    one, two = d.finals()
    assert first.keep_from_s is None
    assert second.keep_from_s is not None
    keep = round(second.keep_from_s * SR)
    # The first utterance's audio (prefix padding, speech, then half of the pause shortened to 0.4 s:
    # more than its early decode heard), then the second one's own audio from half of the shortened
    # pause before its speech.
    assert keep == round((one.end_s + 0.2 - first.start_s) * SR) > first.audio.size
    heard_from = round(first.start_s * SR)
    assert np.array_equal(second.audio[:keep], audio[heard_from : heard_from + keep])
    own_from = round((two.start_s - 0.2) * SR)
    assert np.array_equal(second.audio[keep:], audio[own_from : own_from + second.audio.size - keep])
    # start_s + keep_from_s is the stream time of the own piece.
    assert second.start_s + second.keep_from_s == pytest.approx(two.start_s - 0.2)
    # Only words of the second utterance are kept, timed in the stream, and the text is theirs.
    assert two.words and all(w.start_s >= one.end_s for w in two.words)
    assert all(two.start_s - 0.3 <= w.start_s < w.end_s <= two.end_s + 0.3 for w in two.words)
    assert two.text == " ".join(w.word for w in two.words)
    assert len(two.words) >= 4  # one second of speech: four words of a quarter second
    # What came before everything it heard: only the server's prompt.
    assert second.prompt == "Glossary."


def test_a_pause_longer_than_the_context_gap_is_not_reached_across() -> None:
    d, _, second, _ = two_utterances(2.8, context_audio_gap_s=2.5)
    assert second.keep_from_s is None
    assert second.prompt == "Glossary. " + d.finals()[0].text  # the text context still carries


def test_an_utterance_with_enough_speech_of_its_own_is_decoded_alone() -> None:
    _, _, second, _ = two_utterances(0.9, context_audio_below_s=1.0)  # one second of speech
    assert second.keep_from_s is None
    _, _, second, _ = two_utterances(0.9, context_audio_below_s=1.2)
    assert second.keep_from_s is not None


def test_no_earlier_speech_is_heard_with_context_audio_off() -> None:
    _, _, second, _ = two_utterances(0.9, context_audio_s=0)
    assert second.keep_from_s is None


def test_earlier_speech_is_heard_back_to_context_audio_s() -> None:
    audio = join(silence(0.5), tone(1.0), silence(0.7), tone(1.0), silence(0.7), tone(1.0), silence(1.0))
    heard = {}
    for limit in (10.0, 2.0):
        d = make(SessionConfig(partial_interval_ms=0, context_audio_s=limit))
        d.feed(audio)
        d.finish()
        first, second, third = d.final_requests()
        assert second.keep_from_s is not None and third.keep_from_s is not None
        heard[limit] = third.keep_from_s
    # 10 s: both earlier utterances; 2 s (speech starts 1.7 s apart): only the one just before.
    assert heard[10.0] > 2.0 > heard[2.0] > 1.0


def test_a_joined_final_that_fails_is_retried_joined() -> None:
    d = make(SessionConfig(partial_interval_ms=0), delay=None)
    d.feed(join(silence(0.5), tone(1.0), silence(0.9)))
    d.answer()
    d.feed(join(tone(1.0), silence(1.0)))
    (second,) = [r for r in d.pending if r.kind == "final"]
    assert second.keep_from_s is not None
    d.fail(second)
    (retry,) = [r for r in d.pending if r.kind == "final"]
    assert retry.keep_from_s == second.keep_from_s and np.array_equal(retry.audio, second.audio)
    d.answer(retry)
    assert len(d.finals()) == 2 and d.finals()[1].text
