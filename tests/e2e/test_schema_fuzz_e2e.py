"""Schemathesis against ``/openapi.json`` of a real server (real engine workers): no operation ever
answers 5xx (the ``not_a_server_error`` check), whatever the request.

Every operation in the schema is fuzzed, nothing is excluded, in two generation modes:

- positive (requests the schema allows), half of them with ``model``/``voice`` replaced by ones the
  server has (``tts-1``/``alloy``), so the requests get past the 404 for random ids into text
  normalisation, synthesis and the encoders;
- negative (requests the schema forbids: wrong types, missing fields, bad enums), for the
  operations with a body or query parameters (``GET /health`` has nothing to get wrong, and any
  string is a valid ``{model_id}``).

A short, fixed-seed pass per operation runs in CI (``VOXSERVE_FUZZ_EXAMPLES`` raises it for a
longer hunt). Findings so far, each fixed with a unit test: ``/dev/phonemize`` with a NUL byte in
``text`` and ``normalization_options.normalize=false`` with control characters in ``input`` (both
reached espeak-ng and came back as 500).
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from tests.e2e.conftest import Server

from voxserve.api.app import create_app
from voxserve.config import Settings

pytestmark = pytest.mark.e2e

_EXAMPLES = int(os.environ.get("VOXSERVE_FUZZ_EXAMPLES", "0")) or 25
_KNOWN = {"model": "tts-1", "voice": "alloy"}


def _operations() -> list[tuple[str, str]]:
    # The app's schema without starting it (create_app starts nothing), for one test per operation.
    schema = create_app(Settings(ui_enabled=False)).openapi()
    return [(method.upper(), path) for path, item in schema["paths"].items() for method in item]


@cache
def _schema(url: str) -> Any:
    return schemathesis.openapi.from_url(f"{url}/openapi.json")


def _with_known_ids(pair: tuple[Any, bool]) -> Any:
    case, known = pair
    if known and isinstance(case.body, dict):
        for key, value in _KNOWN.items():
            if key in case.body:
                case.body[key] = value
    return case


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
@pytest.mark.parametrize(("method", "path"), _operations(), ids=lambda v: str(v))
def test_no_operation_answers_5xx(server: Server, method: str, path: str, mode: GenerationMode) -> None:
    operation = _schema(server.url)[path][method]
    violable = operation.get_request_payload_content_types() or any(
        p.location != "path" for p in operation.iter_parameters()
    )
    if mode is GenerationMode.NEGATIVE and not violable:
        return  # no body and no query: nothing to get wrong (any string is a valid path segment)
    statuses: list[int] = []

    @given(case=st.tuples(operation.as_strategy(generation_mode=mode), st.booleans()).map(_with_known_ids))
    @settings(
        max_examples=_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        response = case.call(base_url=server.url, timeout=120)
        statuses.append(response.status_code)
        case.validate_response(response, checks=[not_a_server_error])

    check()
    assert statuses and max(statuses) < 500
