"""Typed wire messages of every voxserve protocol, shared by the server and the Python client.

One module per protocol; each has frozen dataclasses for both directions, with ``to_json()`` /
``to_text()`` to serialise and ``from_json()`` to parse, and dispatchers on ``"type"``:
``parse_client_message`` (what the server calls) and ``parse_server_event`` (what a client calls).

- :mod:`voxserve.protocol.transcribe`: ``WS /v1/stream/transcribe`` (mobile apps).
- :mod:`voxserve.protocol.realtime`: ``WS /v1/realtime`` (OpenAI Realtime transcription, beta and GA).
- :mod:`voxserve.protocol.speak`: ``WS /v1/stream/speak`` (text in, audio out).
- :mod:`voxserve.protocol.chat`: ``WS /v1/stream/chat`` (voice chat with an LLM).
- :mod:`voxserve.protocol.speech`: the SSE events of ``POST /v1/audio/speech`` and
  ``POST /v1/audio/transcriptions``.
- :mod:`voxserve.protocol.common`: messages shared by the streaming protocols; :mod:`.json`: the one
  safe JSON reader every parser uses.

Parsers raise only :class:`voxserve.errors.VoxserveError` subclasses, whose ``code`` is the stable
error code the server sends for that input. The modules are pure: no I/O, no web framework.
"""
