"""Versions of services and workflows: kept, listed, made live, split by a canary, run."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from integration_kit import Services, Wired

from machinery_core.domain.errors import Conflict, InvalidInput, NotFound
from machinery_core.domain.models import (
    Canary,
    EventRequest,
    LiveRequest,
    Service,
    Workflow,
    definition_hash,
)
from machinery_core.service import events, registry, worker

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish")

STRING = {"type": "string"}


def _service(services: Services, name: str, **extra: Any) -> Service:
    return Service.model_validate(
        {
            "name": name,
            "address": f"{services.url}/{name}",
            "spec": {"inputs": {"message": STRING}, "outputs": {"message": STRING}},
            **extra,
        }
    )


def _workflow(*steps: str, description: str | None = None) -> Workflow:
    return Workflow.model_validate(
        {
            "name": "shout",
            "description": description,
            "spec": {
                "inputs": {"message": STRING},
                "services": list(steps),
                "outputs": {"message": STRING},
            },
        }
    )


@pytest.fixture
def shout(wired: Wired, services: Services) -> Wired:
    """upper and reverse registered, and the workflow `shout` (upper) as version 1."""
    for name in ("upper", "reverse"):
        registry.save_service(wired.deps, _service(services, name), create_only=True)
    registry.save_workflow(wired.deps, _workflow("upper"), create_only=True)
    return wired


def _send(wired: Wired, version: int | None = None) -> str:
    request = EventRequest(data={"message": "hello"})
    accepted = events.accept_event(
        wired.deps, "shout", request, "http://127.0.0.1", version=version
    )
    return accepted.event_id


def _run(wired: Wired, event_id: str) -> dict[str, Any] | None:
    worker.advance(wired.deps, event_id, lambda: 600_000)
    return wired.store.get_event(event_id).outputs


def test_each_change_is_a_version_and_an_unchanged_one_stores_nothing(shout: Wired) -> None:
    # When the same definition is sent again, then a changed one
    again, created = registry.save_workflow(shout.deps, _workflow("upper"), create_only=False)
    changed, _ = registry.save_workflow(
        shout.deps, _workflow("upper", "reverse"), create_only=False
    )

    # Then the same one answered version 1 and stored nothing; the change is version 2, live
    assert (again.version, created, changed.version, changed.live_version) == (1, False, 2, 2)
    page = registry.workflow_versions(shout.deps, "shout", 50, None)
    assert [v.version for v in page.items] == [2, 1]
    newest, oldest = page.items
    assert newest.hash == definition_hash(_workflow("upper", "reverse"))
    assert oldest.definition == _workflow("upper") and oldest.hash != newest.hash
    assert registry.workflow_version(shout.deps, "shout", 1).definition.spec.services == ["upper"]
    with pytest.raises(NotFound, match="no version 3"):
        registry.workflow_version(shout.deps, "shout", 3)


def test_versions_are_listed_a_page_at_a_time(shout: Wired) -> None:
    for number in range(2, 6):
        registry.save_workflow(
            shout.deps, _workflow("upper", description=f"v{number}"), create_only=False
        )
    first = registry.workflow_versions(shout.deps, "shout", 2, None)
    second = registry.workflow_versions(shout.deps, "shout", 2, first.next_cursor)
    third = registry.workflow_versions(shout.deps, "shout", 2, second.next_cursor)
    assert [[v.version for v in page.items] for page in (first, second, third)] == [
        [5, 4], [3, 2], [1]
    ]  # fmt: skip


def test_a_version_stored_without_activating_runs_only_when_asked(shout: Wired) -> None:
    # Given version 2 stored with ?activate=false
    accepted, _ = registry.save_workflow(
        shout.deps, _workflow("upper", "reverse"), create_only=False, activate=False
    )
    assert (accepted.version, accepted.live_version) == (2, 1)

    # When an event is sent as usual, and one asks for version 2
    usual, asked = _send(shout), _send(shout, version=2)

    # Then the first runs the live version 1, the second version 2, each recorded
    assert _run(shout, usual) == {"message": "HELLO"}
    assert _run(shout, asked) == {"message": "OLLEH"}
    assert [shout.store.get_event(e).workflow_version for e in (usual, asked)] == [1, 2]
    # And a version that does not exist is a 404
    with pytest.raises(NotFound, match="no version 7"):
        _send(shout, version=7)


def test_an_event_keeps_its_versions_across_an_update_and_a_rollback(
    shout: Wired, services: Services
) -> None:
    # Given version 2 (upper, reverse) live, and an event sent to it
    registry.save_workflow(shout.deps, _workflow("upper", "reverse"), create_only=False)
    in_flight = _send(shout)

    # When the workflow changes again, the service `reverse` changes, and version 1 is
    # made live again (a rollback)
    registry.save_workflow(shout.deps, _workflow("reverse"), create_only=False)
    registry.save_service(
        shout.deps, _service(services, "reverse", timeout_seconds=3), create_only=False
    )
    live = registry.set_live(shout.deps, "shout", LiveRequest(version=1))
    assert live.live_version == 1

    # Then the event runs what it was sent to: version 2, with the services as they were
    assert _run(shout, in_flight) == {"message": "OLLEH"}
    event = shout.store.get_event(in_flight)
    assert event.workflow_version == 2
    assert [(s.service, s.service_version) for s in event.steps] == [
        ("upper", 1), ("reverse", 1)
    ]  # fmt: skip
    # And a new event runs the rolled-back version 1
    fresh = _send(shout)
    assert _run(shout, fresh) == {"message": "HELLO"}
    assert shout.store.get_event(fresh).workflow_version == 1


def test_a_canary_gets_about_its_share_of_new_events(shout: Wired) -> None:
    # Given version 2 as a canary at 30% beside version 1
    registry.save_workflow(shout.deps, _workflow("upper", "reverse"), create_only=False)
    registry.set_live(
        shout.deps, "shout", LiveRequest(version=1, canary=Canary(version=2, percent=30))
    )

    # When 300 events are sent
    sent = [_send(shout) for _ in range(300)]

    # Then about 30% run version 2 (a band of ±12 points: a failure is about 1 in 10^7)
    versions = Counter(shout.store.get_event(e).workflow_version for e in sent)
    assert set(versions) == {1, 2}
    assert 0.18 <= versions[2] / 300 <= 0.42, versions


def test_a_live_switch_names_versions_that_exist(shout: Wired) -> None:
    with pytest.raises(NotFound, match="no version 4"):
        registry.set_live(shout.deps, "shout", LiveRequest(version=4))
    with pytest.raises(InvalidInput, match="another version"):
        registry.set_live(
            shout.deps, "shout", LiveRequest(version=1, canary=Canary(version=1, percent=5))
        )
    with pytest.raises(NotFound):
        registry.set_live(shout.deps, "nobody", LiveRequest(version=1))


def test_a_service_keeps_its_versions_with_secrets_redacted(
    shout: Wired, services: Services
) -> None:
    # Given a service changed twice, the second time with a secret header
    registry.save_service(
        shout.deps, _service(services, "upper", timeout_seconds=4), create_only=False
    )
    registry.save_service(
        shout.deps,
        _service(services, "upper", timeout_seconds=4, secret_headers={"Authorization": "t0p"}),
        create_only=False,
    )
    unchanged, _ = registry.save_service(
        shout.deps,
        _service(services, "upper", timeout_seconds=4, secret_headers={"Authorization": "t0p"}),
        create_only=False,
    )

    # Then it has three versions (the unchanged save stored none), secrets redacted
    assert unchanged.version == 3
    page = registry.service_versions(shout.deps, "upper", 50, None)
    assert [v.version for v in page.items] == [3, 2, 1]
    assert page.items[0].definition.secret_headers == {"Authorization": "<redacted>"}
    assert registry.service_version(shout.deps, "upper", 1).definition.timeout_seconds == 10
    # And an event planned now records version 3 on its step
    event_id = _send(shout)
    _run(shout, event_id)
    assert shout.store.get_event(event_id).steps[0].service_version == 3


def test_a_deleted_workflow_takes_its_history_with_it(shout: Wired) -> None:
    registry.save_workflow(shout.deps, _workflow("upper", "reverse"), create_only=False)
    registry.delete_workflow(shout.deps, "shout")
    items, _ = shout.store.list_workflow_versions("shout", 50, None)
    assert items == []
    registry.save_workflow(shout.deps, _workflow("upper"), create_only=True)
    assert [v.version for v in registry.workflow_versions(shout.deps, "shout", 50, None).items] == [
        1
    ]


def test_a_retry_runs_the_versions_its_event_started_with(shout: Wired, services: Services) -> None:
    # Given an event of version 1 that failed: its service answered 503 every time
    services.behaviours["/upper"] = lambda _: (503, {})
    registry.save_service(
        shout.deps, _service(services, "upper", retry={"max_attempts": 1}), create_only=False
    )
    event_id = _send(shout)
    _run(shout, event_id)
    assert shout.store.get_event(event_id).status.value == "FAILED"

    # When the workflow moves to version 2 and the service is fixed, then the event is retried
    registry.save_workflow(shout.deps, _workflow("upper", "reverse"), create_only=False)
    services.behaviours["/upper"] = lambda body: (200, {"message": body["message"].upper()})
    events.redrive_event(shout.deps, event_id)

    # Then it runs version 1 again, with the service as it was planned (version 2 of it)
    assert _run(shout, event_id) == {"message": "HELLO"}
    event = shout.store.get_event(event_id)
    assert (event.workflow_version, event.run) == (1, 2)
    assert [(s.service, s.service_version) for s in event.steps] == [("upper", 2)]


def test_a_version_left_behind_refuses_the_new_one_with_a_conflict(
    wired: Wired, services: Services, dynamodb: Any
) -> None:
    # Given a version item left by a workflow of that name whose history is still going
    registry.save_service(wired.deps, _service(services, "upper"), create_only=True)
    dynamodb.put_item(
        TableName="machinery-test",
        Item={"PK": {"S": "WORKFLOW#shout"}, "SK": {"S": "VERSION#0000000001"}},
    )

    # When a workflow of that name is created, then it is refused as a conflict, not a
    # definition problem
    with pytest.raises(Conflict, match="has a version 1 already"):
        registry.save_workflow(wired.deps, _workflow("upper"), create_only=True)
