"""The address guard of `machinery local` over HTTP: loopback is allowed, and says so.

The local runtime is a development runtime: services run on this machine, so loopback
addresses are allowed by default, but the metadata endpoint and private ranges are not.
Nothing here is sent anywhere but 127.0.0.1: refused addresses are only registered.
"""

from __future__ import annotations

from typing import Any

import pytest
from e2e_kit import Registry, StartStub, service_definition, unique
from loopback import json_reply

pytestmark = pytest.mark.e2e

TEXT = {"message": "string"}


def _workflow(name: str, services: list[str], **spec: Any) -> dict[str, Any]:
    return {
        "name": name,
        "spec": {
            "services": services,
            "inputs": {"message": {"type": "string"}},
            "outputs": {"message": {"type": "string"}},
            **spec,
        },
    }


def test_the_local_runtime_says_that_it_allows_loopback(local_stack: Any) -> None:
    notice = [line for line in local_stack.banner if "ALLOWED_SERVICE_HOSTS" in line]

    assert len(notice) == 1, local_stack.banner
    assert "Loopback service addresses" in notice[0]
    assert "development runtime" in notice[0]


@pytest.mark.parametrize(
    "address",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://10.0.0.1/",
        "http://192.168.1.20:8080/",
    ],
)
def test_the_metadata_endpoint_and_private_ranges_are_refused_with_422(
    local_stack: Any, registry: Registry, address: str
) -> None:
    # When a service at a metadata or private address is created over HTTP
    name = unique("guarded")
    answer = local_stack.post("/services", json=service_definition(name, address, TEXT, TEXT))
    registry.track_service(name)  # deleted afterwards should it have been stored

    # Then it is refused naming the address field, and nothing is stored
    assert answer.status_code == 422, answer.text
    [detail] = answer.json()["details"]
    assert detail["path"] == "address"
    assert "ALLOWED_SERVICE_HOSTS" in detail["message"]
    assert local_stack.get(f"/services/{name}").status_code == 404


def test_a_loopback_service_registers_and_runs(
    local_stack: Any, registry: Registry, stub_service: StartStub
) -> None:
    # Given a service on 127.0.0.1, which the local runtime allows
    stub = stub_service(lambda call, _: json_reply(200, {"message": call.json()["message"][::-1]}))
    service = unique("loopback")
    registry.service(service_definition(service, stub.address, TEXT, TEXT))
    workflow = unique("loopback-flow")
    registry.workflow(_workflow(workflow, [service]))

    # When an event runs, then the service is called and the event succeeds
    answer = local_stack.post(f"/e/{workflow}", json={"data": {"message": "abc"}})
    assert answer.status_code == 202, answer.text
    event = local_stack.wait_for_end(answer.json()["event_id"])
    assert (event["status"], event["outputs"]) == ("SUCCEEDED", {"message": "cba"})
    assert len(stub.received()) == 1


def test_notification_addresses_are_refused_the_same_way(
    local_stack: Any, registry: Registry, stub_service: StartStub
) -> None:
    stub = stub_service(lambda call, _: json_reply(200, {"message": call.json()["message"]}))
    service = unique("notified")
    registry.service(service_definition(service, stub.address, TEXT, TEXT))
    workflow = unique("notified-flow")

    # A workflow's default notification at the metadata endpoint is refused
    refused = local_stack.post(
        "/workflows",
        json=_workflow(workflow, [service], notify={"url": "http://169.254.169.254/hook"}),
    )
    registry.track_workflow(workflow)
    assert refused.status_code == 422, refused.text
    assert [d["path"] for d in refused.json()["details"]] == ["spec.notify.url"]

    # and so is an event's notification at a private address
    registry.workflow(_workflow(workflow, [service]))
    answer = local_stack.post(
        f"/e/{workflow}",
        json={"data": {"message": "hi"}, "notify": {"url": "http://10.0.0.1/hook"}},
    )
    assert answer.status_code == 422, answer.text
    assert [d["path"] for d in answer.json()["details"]] == ["notify.url"]
    assert local_stack.get(f"/workflows/{workflow}/events").json()["items"] == []
    assert stub.received() == []


def test_a_redirect_is_not_followed(
    local_stack: Any, registry: Registry, stub_service: StartStub
) -> None:
    # Given a service that redirects to another loopback service
    target = stub_service(lambda call, _: json_reply(200, {"message": "followed"}))
    redirecting = stub_service(lambda call, _: (302, {"Location": target.address}, b""))
    service = unique("redirects")
    registry.service(service_definition(service, redirecting.address, TEXT, TEXT))
    workflow = unique("redirects-flow")
    registry.workflow(_workflow(workflow, [service]))

    # When an event runs
    answer = local_stack.post(f"/e/{workflow}", json={"data": {"message": "hi"}})
    assert answer.status_code == 202, answer.text
    event = local_stack.wait_for_end(answer.json()["event_id"])

    # Then the step fails with the 302, not retried, and the redirect was not followed
    assert event["status"] == "FAILED", event
    [step] = event["steps"]
    assert (step["error"]["type"], step["error"]["status_code"]) == ("HttpError", 302)
    assert (step["error"]["retryable"], step["attempts"]) == (False, 1)
    assert len(redirecting.received()) == 1
    assert target.received() == []
