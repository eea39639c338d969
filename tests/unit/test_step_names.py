"""How GET /events/{id}/steps/{step} finds a step: by path, id or top-level service."""

from __future__ import annotations

import pytest
from builders import make_event

from machinery_core.domain.errors import BadRequest, NotFound
from machinery_core.domain.models import StepRecord, StepStatus
from machinery_core.service.events import _step_place

OK = StepStatus.SUCCEEDED


def _run() -> list[StepRecord]:
    """upper; a parallel group (branch 1 holds `charge`); a map of two iterations of `price`."""
    return [
        StepRecord(index=0, service="upper", status=OK),
        StepRecord(
            index=1,
            kind="parallel",
            status=OK,
            steps=[
                StepRecord(index=0, branch=0, service="stock", status=OK),
                StepRecord(index=0, branch=1, service="charge", id="pay", status=OK),
            ],
        ),
        StepRecord(
            index=2,
            kind="map",
            id="lines",
            status=OK,
            steps=[
                StepRecord(index=0, iteration=n, service="price", id="price", status=OK)
                for n in range(2)
            ],
        ),
    ]


@pytest.mark.parametrize(
    ("name", "pointer", "path"),
    [
        ("0", "/steps/0", "0"),
        ("upper", "/steps/0", "0"),
        ("1.1.0", "/steps/1/steps/1", "1.1.0"),
        ("pay", "/steps/1/steps/1", "1.1.0"),
        ("2", "/steps/2", "2"),
        ("lines", "/steps/2", "2"),
        ("2.0:1", "/steps/2/steps/1", "2.0:1"),
    ],
)
def test_a_step_is_found_by_its_path_its_id_or_its_top_level_service(
    name: str, pointer: str, path: str
) -> None:
    assert _step_place(make_event(steps=_run()), name) == (pointer, path)


def test_an_id_every_iteration_of_a_map_shares_asks_for_a_path_and_names_them() -> None:
    with pytest.raises(BadRequest, match=r"2\.0:0, 2\.0:1"):
        _step_place(make_event(steps=_run()), "price")


@pytest.mark.parametrize("name", ["9", "1.1.1", "charge", "2.0:5", "nothing"])
def test_a_step_the_run_does_not_have_is_not_found(name: str) -> None:
    with pytest.raises(NotFound):
        _step_place(make_event(steps=_run()), name)
