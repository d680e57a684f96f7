"""The REST API against its own OpenAPI document, with schemathesis (issue 13, item 12).

Every operation of /api/openapi.json is called with generated requests (valid and invalid ones)
on the real Flask app over the unit harness (real SQLite, the real broadcast lifecycle and
scheduler service; fake speech and fleet). Each answer must be no server error, carry a documented
status code and content type, and match the documented response schema.

The number of examples per operation is small and the generation deterministic (``derandomize``),
so the suite stays fast and a failure repeats."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.test_api import Api

# Examples per operation: enough to reach each documented error path of an operation (missing
# field, wrong type, unknown field, unknown id) without making the suite slow.
EXAMPLES = 12
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    found = Api(tmp_path_factory.mktemp("schemathesis"))
    found.scheduler.create_schedule(
        {
            "title": "Bản tin sáng",
            "text": "Chào bà con.",
            "kind": "daily",
            "time": "06:00",
            "targets": ["all"],
        }
    )
    yield found
    found.manager.stop()
    found.engine.dispose()


@pytest.fixture(scope="module")
def api_schema(api: Api) -> Any:
    return schemathesis.openapi.from_wsgi("/api/openapi.json", api.app)


def _operations() -> list[tuple[str, str]]:
    """(method, path) of every operation in the document (read here, without an app)."""
    from broadcaster.web.openapi import build_spec

    return [
        (method.upper(), path)
        for path, item in build_spec()["paths"].items()
        for method in item
        if method != "parameters"
    ]


@pytest.mark.parametrize(("method", "path"), _operations(), ids=lambda v: v)
def test_the_api_answers_as_its_document_says(api_schema: Any, api: Api, method: str, path: str) -> None:
    operation = api_schema[path][method]

    strategy = operation.as_strategy(GenerationMode.POSITIVE)
    try:
        strategy = strategy | operation.as_strategy(GenerationMode.NEGATIVE)
    except Exception:  # nothing to get wrong in this operation (no parameter, no body)
        pass

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        case.call_and_validate(headers=api.auth, checks=CHECKS)

    run()


@pytest.mark.parametrize("path", [path for method, path in _operations() if method == "GET"], ids=lambda v: v)
def test_an_unknown_query_parameter_gets_a_documented_answer(api_schema: Any, api: Api, path: str) -> None:
    operation = api_schema[path]["GET"]
    params = {p.name: "loa-1" for p in operation.path_parameters}
    case = operation.Case(path_parameters=params or None, query={"khong_co": "1"})
    response = case.call_and_validate(headers=api.auth, checks=CHECKS)
    assert response.status_code in (200, 400, 404)
