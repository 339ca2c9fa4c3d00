"""An onnxruntime session whose runs another thread can stop (:class:`InterruptibleSession`), and one
memory arena for all the sessions of a process (:func:`use_process_arena`).

onnxruntime checks ``RunOptions.terminate`` between the nodes of a graph, so setting it from another
thread ends a run within milliseconds (measured: a 0.75 s Piper run stopped 50 ms after it began, when
the flag was set) with an ``onnxruntime`` ``Fail`` error. The engines pass every run through one such
session, so a worker can honour a cancel mid-sentence (see :class:`voxserve.engines.base.Interruptible`).
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["InterruptibleSession", "use_process_arena"]

_arena_lock = threading.Lock()
_arena_registered = False


def use_process_arena(options: Any) -> None:
    """Make the session created with ``options`` take its CPU memory from the process's one arena.

    Each onnxruntime session otherwise grows an arena of its own to its largest run and keeps it: a
    Piper voice with a session for one thread and one for every core held both. Sharing one arena,
    the worker held 242 MB instead of 280 after its warm-up and 326-418 MB instead of 531-676 after
    long sentences on both sessions, at the same speed (medians of 9 runs, 10 and 19 words, 1 and 2
    threads, within 10 ms)."""
    global _arena_registered
    import onnxruntime as ort

    with _arena_lock:
        if not _arena_registered:
            info = ort.OrtMemoryInfo(
                "Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT
            )
            # 0 / -1: onnxruntime's defaults (no limit, extend by powers of two, default chunk sizes).
            ort.create_and_register_allocator(info, ort.OrtArenaCfg(0, 0, -1, -1))
            _arena_registered = True
    options.add_session_config_entry("session.use_env_allocators", "1")


class InterruptibleSession:
    """Wraps an ``onnxruntime.InferenceSession``: ``run`` always uses this wrapper's ``RunOptions``.

    Everything else is the wrapped session's, so it can stand in for one (Piper's ``PiperVoice`` takes
    it as its ``session``).
    """

    def __init__(self, session: Any) -> None:
        import onnxruntime

        self._session = session
        self._options = onnxruntime.RunOptions()

    def run(self, output_names: Any, input_feed: Any, run_options: Any = None) -> Any:
        """``InferenceSession.run`` with this wrapper's options (``run_options`` is ignored)."""
        return self._session.run(output_names, input_feed, self._options)

    def interrupt(self) -> None:
        """Make the run in progress, and every later one until :meth:`rearm`, fail at once."""
        self._options.terminate = True

    def rearm(self) -> None:
        """Let runs complete again."""
        self._options.terminate = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)
