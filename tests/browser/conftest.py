"""One UI server for the browser tests; Chromium must be there (CI installs it), or they fail."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from tests.browser.harness import chromium_missing_message, start_ui_server
from tests.e2e.conftest import Server, stop_server
from tests.stub_llm import start_stub_llm


@pytest.fixture(scope="session")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    missing = chromium_missing_message()
    if missing:
        pytest.fail(missing)  # never a skip: CI installs Chromium, so its absence is a failure
    tmp = tmp_path_factory.mktemp("ui-server")
    # The Chat tab talks to a stub OpenAI-compatible LLM that streams its answer word by word.
    llm = start_stub_llm(tmp / "stub-llm.log", delay_ms=20, sentences=1)
    try:
        srv = start_ui_server(tmp, "--llm-base-url", llm.url, "--llm-model", "stub")
        try:
            yield srv
        finally:
            stop_server(srv)
    finally:
        llm.stop()
