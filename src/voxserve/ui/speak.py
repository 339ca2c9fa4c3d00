"""The Speak tab: text in, audio out while it is synthesized, and a file to download.

Synthesis goes through :func:`voxserve.api.speech.start_speech` / ``iterate_audio`` (the same path as
``POST /v1/audio/speech``) as raw PCM; each chunk is framed as a small WAV for Gradio's streamed
player, and the whole is encoded in the chosen format, in a thread, for the download.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import gradio as gr

from voxserve.audio.encode import FORMATS
from voxserve.tts.speech import iterate_audio, start_speech
from voxserve.ui.errors import ui_handler
from voxserve.ui.media import ensure_ffmpeg, pcm_to_wav_chunk, write_download

if TYPE_CHECKING:
    from voxserve.ui.app import UiContext

__all__ = ["build_speak_tab", "voice_choices"]


def voice_choices(ctx: UiContext) -> list[tuple[str, str]]:
    """(label, value) of every voice of the engines started so far, then the OpenAI names."""
    state = ctx.state
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for pool in state.registry.pools.values():
        for v in pool.voices:
            if v.id not in seen:
                seen.add(v.id)
                out.append((f"{v.id} ({v.language})", v.id))
    if state.settings.default_voice not in seen:
        out.insert(0, (state.settings.default_voice, state.settings.default_voice))
    for alias, target in state.settings.voice_aliases.items():
        out.append((f"{alias} → {target}", alias))
    return out


def build_speak_tab(ctx: UiContext) -> None:
    settings = ctx.state.settings
    with gr.Tab("Speak", id="speak"):
        with gr.Row():
            with gr.Column():
                text = gr.Textbox(
                    label="Text",
                    lines=5,
                    max_length=settings.max_input_chars,
                    placeholder="Type what to say.",
                    elem_id="speak-text",
                )
                voice = gr.Dropdown(
                    label="Voice",
                    choices=voice_choices(ctx),
                    value=settings.default_voice,
                    allow_custom_value=True,
                    elem_id="speak-voice",
                )
                with gr.Row():
                    speed = gr.Slider(0.25, 4.0, value=1.0, step=0.05, label="Speed", elem_id="speak-speed")
                    fmt = gr.Dropdown(
                        label="Download format", choices=list(FORMATS), value="mp3", elem_id="speak-format"
                    )
                button = gr.Button("Speak", variant="primary", elem_id="speak-button")
            with gr.Column():
                audio = gr.Audio(
                    label="Speech",
                    streaming=True,
                    autoplay=True,
                    interactive=False,
                    elem_id="speak-audio",
                )
                download = gr.File(label="Download", interactive=False, elem_id="speak-download")

        @ui_handler
        async def speak(
            text_value: str, voice_value: str, speed_value: float, fmt_value: str
        ) -> AsyncIterator[tuple[bytes | None, str | None]]:
            state = ctx.state
            if not (text_value or "").strip():
                raise gr.Error("Type some text to speak.")
            rate = state.settings.output_sample_rate
            await asyncio.to_thread(ensure_ffmpeg, state.settings.cache_dir)
            # A VoxserveError (unknown voice, at capacity …) becomes its message on the page.
            started = await start_speech(
                state,
                model="voxserve",
                voice=voice_value or state.settings.default_voice,
                text=text_value,
                fmt="pcm",
                speed=float(speed_value),
            )
            parts: list[bytes] = []
            carry = b""
            async for chunk in iterate_audio(state, started):
                data = carry + chunk.data
                cut = len(data) - len(data) % 2
                carry = data[cut:]
                if cut:
                    parts.append(data[:cut])
                    yield pcm_to_wav_chunk(data[:cut], rate), None
            path = await asyncio.to_thread(write_download, b"".join(parts), rate, fmt_value or "mp3")
            yield None, path

        # Refresh the voice list once the engines have started (they start after the page is built).
        @ui_handler
        def refresh_voices() -> gr.Dropdown:
            return gr.Dropdown(choices=voice_choices(ctx))

        ctx.blocks.load(refresh_voices, outputs=voice, queue=False)
        button.click(
            speak,
            inputs=[text, voice, speed, fmt],
            outputs=[audio, download],
            api_name="speak",
        )
