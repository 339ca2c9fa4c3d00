"""Settings every test shares: servers and apps keep speech jobs in a temporary folder of their own.

The default ``jobs_dir`` is a persistent folder in the user's data directory, used by one server at a
time: tests must neither write there nor share it. A test that checks persistence names its own
``VOXSERVE_JOBS_DIR`` (which wins over ``VOXSERVE_JOBS_TEMPORARY``).
"""

from __future__ import annotations

import os

os.environ.setdefault("VOXSERVE_JOBS_TEMPORARY", "1")
