"""Import voxserve.wyoming first: it imports the wyoming package with audioop's deprecation warning
silenced (the tests run with warnings as errors)."""

import voxserve.wyoming  # noqa: F401
