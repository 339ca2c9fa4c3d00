"""The client's sans-I/O core: every route and WebSocket protocol, written once, with no I/O.

- :mod:`.http`: an HTTP exchange (:class:`~.http.Request`, :class:`~.http.Call`,
  :class:`~.http.StreamCall`) and the body decoders (SSE through :mod:`voxserve.protocol.sse`).
- :mod:`.routes` and :mod:`.jobs`: one function per HTTP route.
- :mod:`.session`: the handshake and the streaming session every WebSocket route shares;
  :mod:`.speak`, :mod:`.transcribe`, :mod:`.realtime` and :mod:`.chat`: one state machine each.

The front ends, :mod:`voxserve.client.sync` and :mod:`voxserve.client.asyncio`, only move bytes.
"""
