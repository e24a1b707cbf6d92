"""Property-based probe of the live API from its own OpenAPI spec (schemathesis).

Every operation gets a bounded number of generated requests, valid and invalid, against a
real uvicorn server with a real Redis (no worker runs, so queued jobs stay queued and are
flushed afterwards). The test fails on any 5xx and on any response that its operation's
schema does not describe.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from tests.service.conftest import LiveServer, make_settings

EXAMPLES_PER_OPERATION = 15


@pytest.fixture(scope="module")
def fuzzed_server(
    service_root: Path, tiny_model_path: Path, redis_url: str, synthetic_dataset_dir: Path
) -> Iterator[LiveServer]:
    settings_ = make_settings(service_root / "fuzz", tiny_model_path, redis_url=redis_url)
    with LiveServer(settings_) as live:
        yield live


@pytest.fixture
def api_schema(fuzzed_server: LiveServer, redis_conn: Any) -> Iterator[Any]:
    yield schemathesis.openapi.from_url(fuzzed_server.url + "/openapi.json")
    redis_conn.flushdb()  # the jobs it queued


CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance]


def _probe(operation: Any, mode: GenerationMode) -> None:
    """``EXAMPLES_PER_OPERATION`` generated requests; the first failing check raises."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
        phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
    )
    def probe(case: Any) -> None:
        case.call_and_validate(checks=CHECKS, timeout=60)

    probe()


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_errors_and_responses_match_the_spec(api_schema: Any, mode: GenerationMode) -> None:
    failures = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:
        try:
            _probe(operation, mode)
        except Unsatisfiable:  # nothing to make invalid (no parameters, no body)
            assert mode == GenerationMode.NEGATIVE and not list(operation.iter_parameters())
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.label}: {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)
