"""voxserve as a Wyoming server (Home Assistant's speech protocol): speech-to-text and text-to-speech over
TCP on the same engine pools, admission and limits as HTTP. Off unless ``wyoming_uri`` is set.

:mod:`.framing` reads events with bounds (the reference reader trusts every length), :mod:`.audio`
turns any PCM the protocol allows into 16 kHz float mono, :mod:`.info` answers ``describe``,
:mod:`.handler` runs one connection and :mod:`.server` listens.
"""

from __future__ import annotations

import warnings

# wyoming.audio imports audioop, which warns of its removal in Python 3.13 (the package carries its own
# copy for then): imported once here with that one warning silenced, so importing voxserve.wyoming is
# quiet (and warnings-as-errors test runs can import it).
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    import wyoming.audio  # noqa: F401

from voxserve.wyoming.server import WyomingServer, start_wyoming  # noqa: E402

__all__ = ["WyomingServer", "start_wyoming"]
