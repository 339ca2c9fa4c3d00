"""Settings every test shares: servers and apps keep speech jobs in a temporary folder of their own;
llama-cpp-python's two leaked file handles are closed at the end.

The default ``jobs_dir`` is a persistent folder in the user's data directory, used by one server at a
time: tests must neither write there nor share it. A test that checks persistence names its own
``VOXSERVE_JOBS_DIR`` (which wins over ``VOXSERVE_JOBS_TEMPORARY``).
"""

from __future__ import annotations

import os

os.environ.setdefault("VOXSERVE_JOBS_TEMPORARY", "1")


def pytest_sessionfinish() -> None:
    # llama-cpp-python opens os.devnull twice at import (for verbose=False) and never closes it: under
    # warnings-as-errors that is two ResourceWarnings at exit in a process that loaded the model.
    import sys

    utils = sys.modules.get("llama_cpp._utils")
    for name in ("outnull_file", "errnull_file"):
        handle = getattr(utils, name, None)
        if handle is not None:
            handle.close()
