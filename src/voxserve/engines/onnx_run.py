"""An onnxruntime session whose runs another thread can stop: :class:`InterruptibleSession`.

onnxruntime checks ``RunOptions.terminate`` between the nodes of a graph, so setting it from another
thread ends a run within milliseconds (measured: a 0.75 s Piper run stopped 50 ms after it began, when
the flag was set) with an ``onnxruntime`` ``Fail`` error. The engines pass every run through one such
session, so a worker can honour a cancel mid-sentence (see :class:`voxserve.engines.base.Interruptible`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["InterruptibleSession"]


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
