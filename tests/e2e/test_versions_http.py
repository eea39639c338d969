"""Versions over HTTP: the version routes, ?activate=false, PUT .../live, ?version= (issue 14)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from e2e_kit import Registry, unique, workflow_definition

pytestmark = pytest.mark.e2e

EXAMPLE_UPPER = "http://127.0.0.1:5001/"
EXAMPLE_REVERSE = "http://127.0.0.1:5002/"


def _chain(name: str, *services: str) -> dict[str, Any]:
    return workflow_definition(name, list(services), {"message": "string"}, {"message": "string"})


def _service(name: str, address: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "address": address,
        "spec": {
            "inputs": {"message": {"type": "string"}},
            "outputs": {"message": {"type": "string"}},
        },
        **extra,
    }


def test_a_workflow_s_versions_are_listed_read_switched_and_run(
    local_stack: Any, registry: Registry
) -> None:
    # Given a workflow created, updated, then updated again without activating
    up, down = unique("up"), unique("down")
    registry.service(_service(up, EXAMPLE_UPPER))
    registry.service(_service(down, EXAMPLE_REVERSE))
    name = unique("versioned")
    registry.workflow(_chain(name, up))
    second = local_stack.put(f"/workflows/{name}", json=_chain(name, up, down))
    third = local_stack.http.put(
        f"{local_stack.url}/workflows/{name}?activate=false", json=_chain(name, down), timeout=10
    )
    assert (second.status_code, second.json()["version"], second.json()["live_version"]) == (
        200, 2, 2
    )  # fmt: skip
    assert (third.json()["version"], third.json()["live_version"]) == (3, 2)

    # Then its versions are listed newest first, each readable, each with its hash
    listed = local_stack.get(f"/workflows/{name}/versions").json()
    assert [v["version"] for v in listed["items"]] == [3, 2, 1]
    assert len({v["hash"] for v in listed["items"]}) == 3
    first = local_stack.get(f"/workflows/{name}/versions/1").json()
    assert first["definition"]["spec"]["services"] == [up]
    assert local_stack.get(f"/workflows/{name}/versions/9").status_code == 404
    assert local_stack.get(f"/workflows/{name}/versions/zero").status_code == 422
    # And the workflow says which is live
    record = local_stack.get(f"/workflows/{name}").json()
    assert (record["version"], record["live_version"]) == (3, 2)

    # When version 1 is made live (a rollback) with version 3 as a canary of 50%
    live = local_stack.put(
        f"/workflows/{name}/live", json={"version": 1, "canary": {"version": 3, "percent": 50}}
    )
    assert live.status_code == 200, live.text
    assert live.json() == {
        "workflow_id": name,
        "live_version": 1,
        "canary": {"version": 3, "percent": 50.0},
    }

    # Then an event sent for version 2 runs it, and records it
    sent = local_stack.post(f"/e/{name}?version=2", json={"data": {"message": "ab"}})
    assert sent.status_code == 202, sent.text
    event = local_stack.wait_for_end(sent.json()["event_id"])
    assert (event["status"], event["workflow_version"]) == ("SUCCEEDED", 2)
    assert event["outputs"] == {"message": "BA"}
    assert [step["service_version"] for step in event["steps"]] == [1, 1]
    # And a version that does not exist is a 404, with nothing accepted
    missing = local_stack.post(f"/e/{name}?version=7", json={"data": {"message": "x"}})
    assert missing.status_code == 404 and "no version 7" in missing.json()["message"]
    # And a live switch to a version that does not exist is a 404; a bad body a 422
    assert local_stack.put(f"/workflows/{name}/live", json={"version": 8}).status_code == 404
    bad = local_stack.put(f"/workflows/{name}/live", json={"version": 1, "canary": {"version": 2}})
    assert bad.status_code == 422


def test_a_service_s_versions_hide_its_secrets(local_stack: Any, registry: Registry) -> None:
    # Given a service registered, then changed with a secret header, then sent unchanged
    name = unique("secretive")
    registry.service(_service(name, EXAMPLE_UPPER))
    changed = _service(name, EXAMPLE_UPPER, secret_headers={"Authorization": "Bearer t0p"})
    assert local_stack.put(f"/services/{name}", json=changed).json()["version"] == 2
    assert local_stack.put(f"/services/{name}", json=changed).json()["version"] == 2

    # Then two versions, the secret redacted in both the listing and the version
    listed = local_stack.get(f"/services/{name}/versions").json()
    assert [v["version"] for v in listed["items"]] == [2, 1]
    assert listed["items"][0]["definition"]["secret_headers"] == {"Authorization": "<redacted>"}
    one = local_stack.get(f"/services/{name}/versions/2")
    assert "t0p" not in one.text
    assert local_stack.get(f"/services/{unique('nobody')}/versions").status_code == 404


def _machinery(stack: Any, *args: str) -> Any:
    from click.testing import CliRunner

    from machinery_core.cli.command import main

    return CliRunner().invoke(main, ["--api-url", stack.url, *args])


def test_the_cli_lists_diffs_and_switches_versions(local_stack: Any, registry: Registry) -> None:
    # Given a workflow with two versions
    up, down = unique("up"), unique("down")
    registry.service(_service(up, EXAMPLE_UPPER))
    registry.service(_service(down, EXAMPLE_REVERSE))
    name = unique("cli-versions")
    registry.workflow(_chain(name, up))
    assert local_stack.put(f"/workflows/{name}", json=_chain(name, up, down)).status_code == 200

    # When they are listed, compared and switched with the CLI
    listed = _machinery(local_stack, "versions", name)
    compared = _machinery(local_stack, "diff", name, "1", "2")
    switched = _machinery(local_stack, "live", name, "1", "--canary", "2:25")
    relisted = _machinery(local_stack, "versions", name, "--output", "json")
    service = _machinery(local_stack, "versions", up, "--output", "json")

    # Then the listing marks the live version, the diff shows the added step, the switch
    # says what serves now
    assert listed.exit_code == 0, listed.output
    rows = [line.split("\t") for line in listed.stdout.splitlines()[1:]]
    assert [(row[0], row[3]) for row in rows] == [("2", "live"), ("1", "")]
    assert compared.exit_code == 0, compared.output
    assert f"+++ {name} version 2" in compared.stdout
    assert f'+      "{down}"' in compared.stdout
    assert switched.exit_code == 0, switched.output
    assert switched.stdout.strip() == f"{name}: version 1 is live, version 2 takes 25%"
    assert [v["version"] for v in json.loads(relisted.stdout)["items"]] == [2, 1]
    assert json.loads(service.stdout)["kind"] == "service"
    # And a bad canary is refused before anything is sent
    refused = _machinery(local_stack, "live", name, "1", "--canary", "two")
    assert refused.exit_code == 2 and "VERSION:PERCENT" in refused.output
