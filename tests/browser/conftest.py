"""One UI server for the browser tests; Chromium must be there (CI installs it), or they fail."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.browser.harness import chromium_missing_message, start_ui_server
from tests.e2e.conftest import Server, stop_server


@pytest.fixture(scope="session")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    missing = chromium_missing_message()
    if missing:
        pytest.fail(missing)  # never a skip: CI installs Chromium, so its absence is a failure
    tmp = tmp_path_factory.mktemp("ui-server")
    # No LLM settings: the Chat tab is answered by the embedded language model, as on a fresh install.
    srv = start_ui_server(tmp)
    try:
        yield srv
    finally:
        stop_server(srv)
