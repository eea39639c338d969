"""Property-based fuzzing of the API against its own OpenAPI document (schemathesis).

The document is loaded from the running local runtime (`GET /openapi.json` of the
`fuzz_stack`), and every operation gets a bounded, derandomized set of generated requests,
valid and invalid. Each answer must be no 5xx, carry a status code the operation
documents, the content type it documents, and a body that matches the documented schema.

Safety: the fuzzer sends traffic to the fuzz stack's loopback URL only, and it must never
make Machinery itself call out. Generated data becomes a service `address`
(`POST`/`PUT /services`) or a notification URL (`notify` of `POST /e/{workflow_id}` or of a
workflow spec), and Machinery calls those addresses only when an event runs. Events start
only through `POST /e/{workflow_id}`, so that operation is excluded from fuzzing entirely:
no workflow the fuzzer registers can ever run, and nothing is sent to a generated address.
`POST /events/{event_id}/retry` runs an event again, so it is excluded too. Every route
is classified explicitly (FUZZED / NEVER_FUZZED): a new route fails the suite until it
has been reviewed and placed in one. `POST /callbacks/{token}` is fuzzed: it never calls
out, and generated tokens are unknown (404); `POST /events/{event_id}/cancel` only ends
a running event, and none runs. The stack's only event was sent by the fixture, before
fuzzing, to a stub on loopback, and had ended; the last test checks that afterwards no
workflow has any other event and that the stub was called exactly once.

The fuzz stack is its own `machinery local` (no `--examples`, ALLOWED_SERVICE_HOSTS
loopback only), so what the fuzzer registers never meets the e2e tier's stack. Definitions
made plausible by the hooks below get a loopback address on the discard port.

Each operation is a pytest case driving schemathesis' strategies with Hypothesis
(`operation.as_strategy`, positive and negative), rather than `schemathesis.pytest.
from_fixture`, whose lazy parametrization sets `Function._nodeid`, gone in pytest 9.2.
`MACHINERY_FUZZ_EXAMPLES=300 pytest -m fuzz` digs deeper than the CI default of 20.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from fuzz_kit import SEEDED_SERVICE, SEEDED_WORKFLOW, FuzzStack, require_loopback
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from machinery_core.local.template import Template

pytestmark = pytest.mark.fuzz

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
SEED = 20260101
# Per operation, valid and invalid requests mixed; MACHINERY_FUZZ_EXAMPLES digs deeper.
MAX_EXAMPLES = int(os.environ.get("MACHINERY_FUZZ_EXAMPLES", "20"))
# The operations that start or restart an event, and so make Machinery call the addresses
# it was given (service addresses, notification URLs): never fuzzed (see the docstring).
NEVER_FUZZED = {
    ("POST", "/e/{workflow_id}"),
    ("POST", "/events/{event_id}/retry"),
}
# Every other route, reviewed: none of them runs an event or calls out. A route added to
# template.yaml fails `test_every_route_is_either_fuzzed_or_never_fuzzed` until it is
# placed in one of the two. In the order they are fuzzed: deletions last, so the seeded
# definitions are still there for the others.
FUZZED = (
    ("GET", "/health"),
    ("GET", "/openapi.json"),
    ("GET", "/ui"),  # the dashboard's static page
    ("GET", "/services"),
    ("GET", "/services/{name}"),
    ("GET", "/workflows"),
    ("GET", "/workflows/{workflow_id}"),
    ("GET", "/workflows/{workflow_id}/events"),
    ("GET", "/workflows/{workflow_id}/diagram"),  # reads the definition, draws it
    ("GET", "/workflows/{workflow_id}/stats"),  # reads the listing and the events, counts
    ("GET", "/events/{event_id}"),
    ("GET", "/events/{event_id}/diagram"),  # reads the event and its plan, draws them
    ("GET", "/events/{event_id}/steps/{step}"),  # reads the event, finds a step
    ("GET", "/events/{event_id}/payloads/{ref}"),  # reads one object of the bucket
    ("GET", "/services/{name}/versions"),
    ("GET", "/services/{name}/versions/{version}"),
    ("GET", "/workflows/{workflow_id}/versions"),
    ("GET", "/workflows/{workflow_id}/versions/{version}"),
    ("POST", "/services"),
    ("PUT", "/services/{name}"),
    ("POST", "/workflows"),
    ("PUT", "/workflows/{workflow_id}"),
    ("PUT", "/workflows/{workflow_id}/live"),  # which version new events run: none is sent
    ("POST", "/events/{event_id}/cancel"),  # only ends a running event: none runs here
    ("POST", "/callbacks/{token}"),  # completes a waiting step: none waits here
    ("DELETE", "/workflows/{workflow_id}"),
    ("DELETE", "/services/{name}"),
)
# Nothing ever calls this (no event runs), and were anything to, it is loopback's discard
# port, where nothing listens.
PLAUSIBLE_ADDRESS = "http://127.0.0.1:9/fuzz"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _template_routes() -> set[tuple[str, str]]:
    routes = Template.load(TEMPLATE).functions()["ApiFunction"].routes
    return {(route.method.upper(), route.path) for route in routes}


@pytest.fixture(scope="session")
def api_schema(fuzz_stack: FuzzStack) -> Any:
    """The API's own OpenAPI document, served by the fuzz stack, targeting its loopback URL."""
    base_url = require_loopback(fuzz_stack.url)
    config = schemathesis.Config.from_dict(
        {"seed": SEED, "base-url": base_url, "request-timeout": 10}
    )
    schema = schemathesis.openapi.from_url(base_url + "/openapi.json", config=config)
    known = fuzz_stack.known_path_values()

    @schema.hook
    def flatmap_path_parameters(
        context: Any, path_parameters: dict[str, Any] | None
    ) -> st.SearchStrategy[Any]:
        """Half the time, name the seeded service, workflow or event: 200s get checked too."""
        if not path_parameters:
            return st.just(path_parameters)
        real = {key: known[key] for key in path_parameters if key in known}
        return st.sampled_from([path_parameters, {**path_parameters, **real}])

    @schema.hook
    def flatmap_case(context: Any, case: Any) -> st.SearchStrategy[Any]:
        """Half the time, make a definition plausible: 201s and 200s get checked too."""
        return st.sampled_from([case, _plausible(case)])

    return schema


def _plausible(case: Any) -> Any:
    """The case with a definition the registry may accept: a loopback address, the body's
    name equal to the path's, and the seeded service as the workflow's only step."""
    if not isinstance(case.body, dict):
        return case
    body = copy.deepcopy(case.body)
    if "address" in body:
        body["address"] = PLAUSIBLE_ADDRESS
    path_name = case.path_parameters.get("name") or case.path_parameters.get("workflow_id")
    if "name" in body and isinstance(path_name, str):
        body["name"] = path_name
    spec = body.get("spec")
    if isinstance(spec, dict) and "services" in spec:
        spec["services"] = [SEEDED_SERVICE]
        spec.pop("operations", None)
        if "notify" in spec:
            spec["notify"] = {"url": PLAUSIBLE_ADDRESS}
    plausible = case.derive()
    plausible.body = body
    return plausible


@pytest.mark.parametrize(("method", "path"), FUZZED, ids=lambda value: str(value))
def test_every_operation_answers_as_documented(
    api_schema: Any, fuzz_stack: FuzzStack, method: str, path: str
) -> None:
    # Given generated requests for one documented operation (never the event start),
    # valid ones and invalid ones
    assert (method, path) not in NEVER_FUZZED
    operation = api_schema[path][method]
    requests_for_it = st.one_of(
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    )
    base_url = require_loopback(fuzz_stack.url)
    http = requests.Session()

    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(case=requests_for_it)
    def answers_as_documented(case: Any) -> None:
        assert (case.method.upper(), case.operation.path) == (method, path)
        # When each is sent to the fuzz stack on loopback
        # Then the answer is no 5xx, and its status, content type and body are documented ones
        case.call_and_validate(base_url=base_url, session=http, checks=CHECKS)

    answers_as_documented()


def test_every_route_is_either_fuzzed_or_never_fuzzed(api_schema: Any) -> None:
    # Given the routes template.yaml deploys and those the served document lists
    routes = _template_routes()
    documented = {
        (method.upper(), path)
        for path, item in api_schema.raw_schema["paths"].items()
        for method in item
        if method in {"get", "put", "post", "delete", "patch"}
    }

    # Then each is in exactly one of the reviewed sets, and the event start is never fuzzed
    assert routes == documented
    assert len(set(FUZZED)) == len(FUZZED)
    assert set(FUZZED) | NEVER_FUZZED == routes
    assert not set(FUZZED) & NEVER_FUZZED
    assert ("POST", "/e/{workflow_id}") in NEVER_FUZZED


def test_the_document_gives_every_error_the_error_body_and_no_body_to_a_204(
    api_schema: Any,
) -> None:
    # Given every operation of the served document
    for path, item in api_schema.raw_schema["paths"].items():
        for method, operation in item.items():
            for code, answer in operation["responses"].items():
                # Then every error it documents is the API's one error body (no framework default)
                if code.startswith(("4", "5")):
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path)
                # And a 204 documents no body, which is what it answers
                if code == "204":
                    assert not answer.get("content"), (method, path)
            # And every operation documents the 413 and 422 that any request may get
            assert {"413", "422"} <= set(operation["responses"]), (method, path)


def test_no_event_ran_during_fuzzing(fuzz_stack: FuzzStack) -> None:
    # Given the fuzz stack after fuzzing (this module's tests run in order)
    http = requests.Session()
    url = require_loopback(fuzz_stack.url)

    # When every registered workflow's events, and the seeded event, are read
    workflows: list[str] = []
    cursor = None
    while True:
        params = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        page = http.get(url + "/workflows", params=params, timeout=10).json()
        workflows += [item["workflow_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    events = {
        workflow: [
            item["event_id"]
            for item in http.get(url + f"/workflows/{workflow}/events", timeout=10).json()["items"]
        ]
        for workflow in workflows
    }
    seeded = http.get(url + f"/events/{fuzz_stack.seeded_event_id}", timeout=10).json()

    # Then no workflow has an event, but for the seeded one its seeded event
    for workflow, event_ids in events.items():
        expected = [fuzz_stack.seeded_event_id] if workflow == SEEDED_WORKFLOW else []
        assert event_ids == expected, workflow
    # And the seeded event ran once, before fuzzing: its one step made the only service call
    assert seeded["status"] == "SUCCEEDED"
    assert seeded.get("run", 1) == 1
    assert [step["attempts"] for step in seeded["steps"]] == [1]
    assert len(fuzz_stack.stub.received()) == 1
