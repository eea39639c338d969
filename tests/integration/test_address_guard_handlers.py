"""The address guard through the handlers: registration answers 422, calls are refused.

Names are resolved by a FakeResolver (no DNS is queried), and the invoker's session sends
only to 127.0.0.1: any other request is recorded by an Unreachable transport instead, so
a broken guard shows up in `spy.sent` rather than on the network.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
import requests
from integration_kit import FakeLambdaContext, Wired, executions, load_handler_module, recorded
from loopback import FakeResolver, LoopbackServer, Unreachable
from requests.adapters import HTTPAdapter

from machinery_core.adapters.addresses import LOOPBACK_HOSTS, AddressPolicy
from machinery_core.adapters.invoker import ServiceInvoker
from machinery_core.domain.errors import NotFound, NotificationFailed
from machinery_core.domain.models import EventStatus, StepStatus
from machinery_core.runtime.dependencies import configure

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

api = load_handler_module("api_app", "functions/api/app.py")
step = load_handler_module("step_app", "functions/step/app.py")

STRING = {"type": "string"}
NAMES = {
    "metadata-alias.test": ["169.254.169.254"],
    "public.test": ["93.184.216.34"],
}


@dataclass
class Guard:
    wired: Wired
    resolver: FakeResolver
    spy: Unreachable  # what would have left the machine


def guard(wired: Wired, allowed: str, session: requests.Session) -> Guard:
    """`wired` with ALLOWED_SERVICE_HOSTS=`allowed`, names from NAMES, loopback-only sends."""
    resolver = FakeResolver(NAMES)
    policy = AddressPolicy.parse(allowed, resolver=resolver)
    spy = Unreachable()
    session.mount("http://", spy)
    session.mount("https://", spy)
    session.mount("http://127.0.0.1:", HTTPAdapter())  # the longest prefix wins
    wired.deps = replace(
        wired.deps,
        invoker=ServiceInvoker(session, address_policy=policy),
        address_policy=policy,
    )
    configure(wired.deps)  # `wired` unconfigures it when the test ends
    return Guard(wired, resolver, spy)


@pytest.fixture
def deployed(wired: Wired) -> Iterator[Guard]:
    """As the deployed stack runs by default: nothing loopback or private is allowed."""
    with requests.Session() as session:
        yield guard(wired, "", session)


@pytest.fixture
def local(wired: Wired) -> Iterator[Guard]:
    """As `machinery local` runs by default: loopback is allowed."""
    with requests.Session() as session:
        yield guard(wired, LOOPBACK_HOSTS, session)


def put_service(body: dict[str, Any]) -> dict[str, Any]:
    """create_service as `PUT /services/{name}`."""
    event = recorded("create_service", body)
    path = f"/services/{body['name']}"
    event["routeKey"] = event["requestContext"]["routeKey"] = "PUT /services/{name}"
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["requestContext"]["http"]["method"] = "PUT"
    event["pathParameters"] = {"name": body["name"]}
    return event


def invoke(event: dict[str, Any]) -> tuple[int, Any]:
    answer = api.handler(event, FakeLambdaContext())
    return answer["statusCode"], json.loads(answer["body"]) if answer.get("body") else None


def service(address: str, name: str = "upper", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "address": address,
        "spec": {"inputs": {"message": STRING}, "outputs": {"message": STRING}},
        **extra,
    }


def workflow(**spec: Any) -> dict[str, Any]:
    return {
        "name": "shout",
        "spec": {
            "services": ["upper"],
            "inputs": {"message": STRING},
            "outputs": {"message": STRING},
        }
        | spec,
    }


def register(address: str, **extra: Any) -> None:
    status, body = invoke(recorded("create_service", service(address, **extra)))
    assert status == 201, body
    status, body = invoke(recorded("create_workflow", workflow()))
    assert status == 201, body


def send_event() -> str:
    status, body = invoke(recorded("send_event"))
    assert status == 202, body
    event_id: str = body["event_id"]
    return event_id


def run_to_the_end(event_id: str, invocations: int = 10) -> list[dict[str, Any]]:
    """Invoke the step handler as the state machine would (backoffs skipped) until it ends."""
    answers: list[dict[str, Any]] = []
    for _ in range(invocations):
        answer = step.handler({"event_id": event_id}, FakeLambdaContext("machinery-step"))
        answers.append(answer)
        if answer["status"] not in ("CONTINUE", "BACKOFF"):
            return answers
    pytest.fail(f"event {event_id} still running after {invocations} invocations: {answers}")


# --- registration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://10.0.0.1/",
        "http://172.16.5.4:8080/",
        "http://192.168.0.10/",
        "http://127.0.0.1:5001/",
        "http://[::1]:5001/",
        "http://[::ffff:127.0.0.1]:5001/",
        "http://localhost:5001/",
        "http://2130706433:5001/",
        "http://100.64.0.1/",
    ],
)
def test_a_service_at_a_refused_address_answers_422_and_is_not_stored(
    deployed: Guard, address: str
) -> None:
    # Given the deployed default (ALLOWED_SERVICE_HOSTS empty)
    # When a service at a metadata, private or loopback address is created
    status, body = invoke(recorded("create_service", service(address)))

    # Then it is refused with the field named, and nothing is stored
    assert status == 422, body
    [detail] = body["details"]
    assert detail["path"] == "address"
    assert "ALLOWED_SERVICE_HOSTS" in detail["message"]
    with pytest.raises(NotFound):
        deployed.wired.store.get_service("upper")


def test_updating_a_service_to_a_refused_address_answers_422_and_keeps_the_old_one(
    deployed: Guard,
) -> None:
    # Given a service registered by a (public) name
    register("https://public.test/upper")

    # When it is PUT with the metadata endpoint as its address
    status, body = invoke(put_service(service("http://169.254.169.254/latest/meta-data/")))

    # Then it is refused and the stored definition is unchanged
    assert status == 422, body
    assert [d["path"] for d in body["details"]] == ["address"]
    stored = deployed.wired.store.get_service("upper")
    assert (stored.definition.address, stored.version) == ("https://public.test/upper", 1)


def test_a_workflow_notifying_a_refused_address_answers_422_and_is_not_stored(
    deployed: Guard,
) -> None:
    status, body = invoke(recorded("create_service", service("https://public.test/upper")))
    assert status == 201, body

    status, body = invoke(
        recorded("create_workflow", workflow(notify={"url": "http://169.254.169.254/hook"}))
    )

    assert status == 422, body
    assert [d["path"] for d in body["details"]] == ["spec.notify.url"]
    with pytest.raises(NotFound):
        deployed.wired.store.get_workflow("shout")


def test_an_event_notifying_a_refused_address_answers_422_and_starts_nothing(
    deployed: Guard,
) -> None:
    # Given a registered workflow
    register("https://public.test/upper")

    # When an event asks to be notified at a private address
    status, body = invoke(
        recorded("send_event", {"data": {"message": "hi"}, "notify": {"url": "http://10.0.0.1/"}})
    )

    # Then it is refused naming notify.url, and no event is stored or started
    assert status == 422, body
    assert [d["path"] for d in body["details"]] == ["notify.url"]
    assert deployed.wired.store.list_events("shout", 10, None, None)[0] == []
    assert executions(deployed.wired) == []


def test_the_allow_list_lets_a_private_service_register(wired: Wired) -> None:
    with requests.Session() as session:
        guard(wired, "10.0.0.0/8", session)

        status, body = invoke(recorded("create_service", service("http://10.20.30.40:8080/")))

    assert status == 201, body
    assert wired.store.get_service("upper").definition.address == "http://10.20.30.40:8080/"


# --- call time ---------------------------------------------------------------------------


def test_a_service_whose_name_resolves_to_the_metadata_endpoint_fails_its_step_uncalled(
    local: Guard,
) -> None:
    # Given a service registered by a name (names pass registration) that resolves to
    # 169.254.169.254 when it is called
    register("http://metadata-alias.test/latest/meta-data/")
    event_id = send_event()

    # When the event runs
    answers = run_to_the_end(event_id)

    # Then its only step fails at once with AddressRefused, and the service is never contacted
    assert answers[-1]["status"] == "FAILED"
    event = local.wired.store.get_event(event_id)
    assert event.status is EventStatus.FAILED
    [only] = event.steps
    assert (only.status, only.attempts) == (StepStatus.FAILED, 1)
    assert only.error is not None
    assert (only.error.type, only.error.retryable) == ("AddressRefused", False)
    assert "169.254.169.254" in only.error.message
    assert event.error is not None and event.error.type == "AddressRefused"
    assert ("metadata-alias.test", 80) in local.resolver.asked
    assert local.spy.sent == []


def test_a_service_whose_name_does_not_resolve_fails_with_dns_error_after_its_retries(
    local: Guard,
) -> None:
    # Given a service whose name does not resolve, allowed three attempts
    register(
        "http://nowhere.invalid/upper",
        retry={"max_attempts": 3, "interval_seconds": 1, "backoff_rate": 1},
    )
    event_id = send_event()

    # When the event runs, its backoffs skipped
    answers = run_to_the_end(event_id)

    # Then each attempt was retried as a DNS error, and the event ended FAILED with it
    assert [a["status"] for a in answers] == ["BACKOFF", "BACKOFF", "FAILED"]
    event = local.wired.store.get_event(event_id)
    assert event.status is EventStatus.FAILED
    [only] = event.steps
    assert only.attempts == 3
    assert [a.error.type for a in only.history if a.error] == ["DnsError"] * 3
    assert only.error is not None and (only.error.type, only.error.retryable) == ("DnsError", True)
    assert local.resolver.asked == [("nowhere.invalid", 80)] * 3
    assert local.spy.sent == []


def test_a_redirect_to_the_metadata_endpoint_is_not_followed(local: Guard) -> None:
    # Given a loopback service that answers 302 to the metadata endpoint
    redirecting = LoopbackServer(
        lambda call, nth: (302, {"Location": "http://169.254.169.254/latest/meta-data/"}, b"")
    ).start()
    try:
        register(redirecting.url + "/upper")
        event_id = send_event()

        # When the event runs
        run_to_the_end(event_id)
    finally:
        redirecting.stop()

    # Then the step fails with a non-retryable HttpError 302, and nothing else was contacted
    event = local.wired.store.get_event(event_id)
    assert event.status is EventStatus.FAILED
    [only] = event.steps
    assert (only.status, only.attempts) == (StepStatus.FAILED, 1)
    assert only.error is not None
    assert (only.error.type, only.error.status_code, only.error.retryable) == (
        "HttpError",
        302,
        False,
    )
    assert [call.path for call in redirecting.received()] == ["/upper"]
    assert local.spy.sent == []


def test_a_notification_to_a_name_resolving_to_a_refused_address_is_never_sent(
    local: Guard,
) -> None:
    # Given an event that ended and is to be notified at a name resolving to 169.254.169.254
    register("http://public.test/upper")
    status, body = invoke(
        recorded(
            "send_event",
            {"data": {"message": "hi"}, "notify": {"url": "http://metadata-alias.test/hook"}},
        )
    )
    assert status == 202, body
    event_id = body["event_id"]
    stored = local.wired.store.get_event(event_id)
    local.wired.store.save_event(
        stored.model_copy(update={"status": EventStatus.SUCCEEDED, "outputs": {"message": "HI"}})
    )

    # When the worker attempts the notification, then it is refused and recorded as such
    with pytest.raises(NotificationFailed, match="AddressRefused"):
        step.handler({"action": "notify", "event_id": event_id}, FakeLambdaContext())
    note = local.wired.store.get_event(event_id).notification
    assert note is not None and note.last_error is not None
    assert note.last_error.startswith("AddressRefused: ")
    assert (note.attempts, note.last_status_code) == (1, None)
    assert local.spy.sent == []
