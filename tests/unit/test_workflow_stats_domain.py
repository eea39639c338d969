"""domain/stats.py: nearest-rank percentiles and the paths of a workflow's planned steps."""

from __future__ import annotations

import pytest
from builders import STRING

from machinery_core.domain.models import StepRecord, StepStatus, Workflow
from machinery_core.domain.stats import percentile, planned_steps, step_records


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [
        ([], 50, None),
        ([7.0], 50, 7.0),
        ([7.0], 95, 7.0),
        ([40.0, 10.0, 30.0, 20.0], 50, 20.0),  # rank ceil(2.0) = 2
        ([40.0, 10.0, 30.0, 20.0], 95, 40.0),  # rank ceil(3.8) = 4
        ([float(v) for v in range(1, 61)], 95, 57.0),  # 0.95 × 60 is 57 exactly, not 57.0…01
        ([float(v) for v in range(1, 101)], 50, 50.0),
        ([float(v) for v in range(1, 101)], 100, 100.0),
    ],
)
def test_percentiles_are_nearest_rank(values: list[float], p: int, expected: float | None) -> None:
    assert percentile(values, p) == expected


def test_planned_steps_are_named_as_the_step_views_name_them() -> None:
    # Given a workflow with a condition, a parallel group and a map holding a parallel group
    workflow = Workflow.model_validate(
        {
            "name": "nested",
            "spec": {
                "services": [
                    "a",
                    {"when": "x", "steps": ["b"], "otherwise": ["c", {"service": "d", "id": "dd"}]},
                    {"parallel": [["e"], ["f", "g"]]},
                    {
                        "map": "items",
                        "steps": ["h", {"parallel": [["i"], ["j"]]}],
                        "collect": "out",
                    },
                ],
                "inputs": {"x": STRING},
            },
        }
    )

    # Then each service step has its path: branch and index per group level, a map's
    # steps without an iteration
    assert planned_steps(workflow.spec) == [
        ("0", "a"),
        ("1.0.0", "b"),
        ("1.1.0", "c"),
        ("1.1.1", "d"),
        ("2.0.0", "e"),
        ("2.1.0", "f"),
        ("2.1.1", "g"),
        ("3.0", "h"),
        ("3.1.0.0", "i"),
        ("3.1.1.0", "j"),
    ]


def test_a_map_iterations_records_fold_into_their_step() -> None:
    # Given a map whose second step is a parallel group, run over two elements
    def leaf(service: str, **extra: object) -> StepRecord:
        return StepRecord.model_validate(
            {"index": 0, "service": service, "status": StepStatus.SUCCEEDED, **extra}
        )

    group = StepRecord(
        index=3,
        kind="map",
        status=StepStatus.SUCCEEDED,
        steps=[
            *(leaf("h", iteration=k) for k in range(2)),
            *(
                StepRecord(
                    index=1,
                    kind="parallel",
                    iteration=k,
                    status=StepStatus.SUCCEEDED,
                    steps=[leaf("i", branch=0), leaf("j", branch=1)],
                )
                for k in range(2)
            ),
        ],
    )

    # Then every record is found under its step's path, whatever its iteration
    assert [(path, record.service) for path, record in step_records([group])] == [
        ("3.0", "h"),
        ("3.0", "h"),
        ("3.1.0.0", "i"),
        ("3.1.1.0", "j"),
        ("3.1.0.0", "i"),
        ("3.1.1.0", "j"),
    ]
