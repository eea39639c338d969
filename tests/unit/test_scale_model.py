"""The capacity model (benchmarks/scale.py): limits, what binds, the cost at a service latency
and memory size. Every count here is built by hand, never read from a bench run."""

from __future__ import annotations

import math
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import costs  # noqa: E402
import report  # noqa: E402
import scale  # noqa: E402

# A 3-step event: 5 table WRU + 3 index WRU, 5 RRU (1 workflow item + 3 service items at
# intake, the event at the state loop), an API invocation of 20 ms and a step-function
# invocation of 40 ms of which 10 ms waiting on the services.
PROFILE = scale.EventProfile(
    workflow="process-text",
    steps=3,
    http_requests=1,
    executions_started=1,
    transitions=3,
    table_write_units=5,
    index_write_units=3,
    read_units=5,
    definition_read_units_counted=4,
    workflow_item_read_units=1,
    service_item_read_units=(1, 1, 1),
    api_invocations=1,
    api_ms=20,
    step_invocations=1,
    step_ms=40,
    step_service_ms=10,
    step_aws_ms=12,
    execution_ms=50,
    execution_ms_each=(50,),
)
# The template's defaults as issue 18 gives them, services answering in 100 ms.
DEFAULTS = scale.Settings(
    service_latency_ms=100,
    index_shards=16,
    definition_cache_seconds=1,
    api_rate_limit=100,
    api_burst_limit=200,
    workflows=1,
)
# Everything a template parameter or a soft quota holds back, out of the way.
OPEN = replace(DEFAULTS, api_rate_limit=1e9)


def _by_key(found: list[scale.Constraint]) -> dict[str, scale.Constraint]:
    return {c.key: c for c in found}


# --- the listing index's write shards ------------------------------------------------------


def test_the_listing_index_spreads_a_workflows_writes_over_its_shards() -> None:
    # Given 3 index WRU per event at 3,000 events/s on 16 shards
    index = _by_key(scale.constraints(PROFILE, "EXPRESS", DEFAULTS))["index_partition"]

    # Then the hottest index partition takes 3 × 3,000 / 16 = 562.5 WCU/s, within 1,000
    assert index.usage(3000) == pytest.approx(562.5)
    assert index.limit == 1000 and not index.adjustable
    assert index.needed_at(3000) == ""
    assert index.max_rate() == pytest.approx(1000 * 16 / 3)

    # And on 8 shards it takes 1,125: over, and 9 shards would do
    eight = _by_key(scale.constraints(PROFILE, "EXPRESS", replace(DEFAULTS, index_shards=8)))
    assert eight["index_partition"].usage(3000) == pytest.approx(1125)
    assert eight["index_partition"].needed_at(3000) == "EventIndexShards → 9"
    assert scale.index_shards_needed(3000, 3) == 9


def test_a_deployments_rate_spreads_over_its_workflows_listings() -> None:
    # Given 10,000 events/s over 10 workflows, 16 shards each
    settings = replace(DEFAULTS, workflows=10)
    index = _by_key(scale.constraints(PROFILE, "EXPRESS", settings))["index_partition"]

    # Then a workflow's hottest index partition takes 1,000 × 3 / 16 = 187.5 WCU/s
    assert index.usage(10_000) == pytest.approx(187.5)
    assert scale.index_shards_needed(10_000, 3, workflows=10) == 3


def test_an_events_own_item_does_not_grow_with_the_rate() -> None:
    table = _by_key(scale.constraints(PROFILE, "EXPRESS", DEFAULTS))["table_partition"]
    assert table.usage(1) == table.usage(1e6) == 5
    assert table.max_rate() == math.inf


# --- the definitions' hot read keys -----------------------------------------------------------


def test_without_a_cache_every_event_reads_its_workflows_definition() -> None:
    # Given no definition cache
    uncached = replace(OPEN, definition_cache_seconds=0)
    item = _by_key(scale.constraints(PROFILE, "EXPRESS", uncached))["definition_item"]

    # Then at 3,000 events/s the item takes 3,000 RCU/s: a whole partition's
    assert item.usage(3000) == pytest.approx(3000)
    assert item.max_rate() == pytest.approx(3000)
    assert item.needed_at(3001).startswith("DefinitionCacheSeconds → ")


def test_with_a_cache_each_api_container_reads_it_once_per_ttl() -> None:
    # Given a 1 s cache and 20 ms API invocations: 60 containers at 3,000 events/s
    item = _by_key(scale.constraints(PROFILE, "EXPRESS", DEFAULTS))["definition_item"]

    # Then the item takes min(3,000, 60 / 1 s) × 1 RRU = 60 RCU/s
    assert item.usage(3000) == pytest.approx(60)
    assert scale.cache_factor(0.020, 1.0) == pytest.approx(0.02)
    assert scale.cache_factor(0.020, 0.0) == 1.0
    # and never more than every event reading it (a TTL shorter than an invocation)
    assert scale.cache_factor(0.020, 0.001) == 1.0


def test_a_service_every_workflow_calls_is_read_by_the_whole_deployment() -> None:
    # Given 10 workflows at 10,000 events/s in all, without a cache
    settings = replace(OPEN, workflows=10, definition_cache_seconds=0)
    found = _by_key(scale.constraints(PROFILE, "EXPRESS", settings))

    # Then a workflow's own item takes its 1,000 events' reads, a shared service's all 10,000
    assert found["definition_item"].usage(10_000) == pytest.approx(1000)
    assert found["service_item"].usage(10_000) == pytest.approx(10_000)
    # unless each workflow calls services of its own
    apart = _by_key(scale.constraints(PROFILE, "EXPRESS", settings, shared_services=False))
    assert apart["service_item"].usage(10_000) == pytest.approx(1000)


def test_the_tables_reads_count_the_definitions_as_the_cache_leaves_them() -> None:
    # Given 1 RRU of the event besides the 4 of its definitions
    cached = _by_key(scale.constraints(PROFILE, "EXPRESS", DEFAULTS))["table_reads"]
    uncached = _by_key(
        scale.constraints(PROFILE, "EXPRESS", replace(DEFAULTS, definition_cache_seconds=0))
    )["table_reads"]

    # Then without a cache an event reads 5 RRU, with it 1 + 4 × 0.02
    assert uncached.per_event == pytest.approx(5)
    assert cached.per_event == pytest.approx(1 + 4 * 0.02)


# --- Lambda concurrency, Step Functions, the API ----------------------------------------------


def test_the_concurrency_sums_each_functions_time_per_event() -> None:
    # Given 20 ms of API and a step function of 30 ms of its own plus 3 × 100 ms of services
    found = _by_key(scale.constraints(PROFILE, "EXPRESS", DEFAULTS))
    concurrency = found["lambda_concurrency"]

    # Then an event holds 0.35 s of concurrency: 1,050 at 3,000 events/s, over the 1,000
    assert PROFILE.step_overhead_ms == 30
    assert PROFILE.step_function_ms(100) == 330
    assert concurrency.per_event == pytest.approx(0.35)
    assert concurrency.usage(3000) == pytest.approx(1050)
    assert concurrency.max_rate() == pytest.approx(1000 / 0.35)
    assert concurrency.needed_at(3000) == "Lambda concurrent executions quota → 1,050 executions"
    # And the services' latency is a parameter: at 0 ms the step function holds 30 ms
    fast = _by_key(scale.constraints(PROFILE, "EXPRESS", replace(DEFAULTS, service_latency_ms=0)))
    assert fast["lambda_concurrency"].per_event == pytest.approx(0.05)


def test_standard_counts_transitions_and_open_executions_express_does_not() -> None:
    standard = _by_key(scale.constraints(PROFILE, "STANDARD", DEFAULTS))
    express = _by_key(scale.constraints(PROFILE, "EXPRESS", DEFAULTS))
    assert standard["start_execution"].limit == 300
    assert express["start_execution"].limit == 6000
    assert standard["state_transitions"].usage(100) == 300
    # an execution open 50 ms plus 3 × 100 ms of services
    assert standard["open_executions"].usage(1000) == pytest.approx(350)
    assert "state_transitions" not in express and "open_executions" not in express


def test_the_stage_throttling_binds_first_with_the_templates_defaults() -> None:
    # Given the template's 100 requests/s
    found = scale.constraints(PROFILE, "EXPRESS", DEFAULTS)

    # Then the stage's throttling binds, at 100 events/s, and is raised by its parameter
    first = scale.binding(found)
    assert first.key == "api_stage" and first.max_rate() == 100
    assert first.needed_at(3000) == "ApiThrottlingRateLimit → 3,000"


def test_past_the_stage_each_type_has_its_own_binding_limit() -> None:
    # Without the stage's throttling: STANDARD's StartExecution refill (300/s) binds first,
    # EXPRESS's the Lambda concurrency (1,000 / 0.35 s ≈ 2,857 events/s)
    assert scale.binding(scale.constraints(PROFILE, "STANDARD", OPEN)).key == "start_execution"
    express = scale.binding(scale.constraints(PROFILE, "EXPRESS", OPEN))
    assert express.key == "lambda_concurrency"
    assert express.max_rate() == pytest.approx(2857.14, abs=0.01)
    # And a callback's second execution and HTTP request count twice
    callback = replace(PROFILE, executions_started=2, http_requests=2)
    stage = _by_key(scale.constraints(callback, "STANDARD", DEFAULTS))
    assert stage["api_stage"].max_rate() == 50
    assert stage["start_execution"].max_rate() == 150


def test_the_capacity_says_what_to_raise_and_whether_the_target_is_reached() -> None:
    # Given one workflow at 3,000 events/s on EXPRESS with the defaults
    modelled = scale.capacity(PROFILE, "EXPRESS", DEFAULTS, 3000)

    # Then it sustains 100 events/s; the target needs the stage and the concurrency raised,
    # both adjustable
    assert modelled["sustainable"] == 100
    assert modelled["binding"] == "api_stage"
    assert [r["key"] for r in modelled["raises"]] == ["lambda_concurrency", "api_stage"]
    assert modelled["reached"] == "with documented increases"
    # And to go further than 100 the stage goes up to where the concurrency binds
    assert modelled["next"]["key"] == "lambda_concurrency"
    assert modelled["raise_first"] == "ApiThrottlingRateLimit → 2,857"
    # A target within every limit is reached with the defaults
    assert scale.capacity(PROFILE, "EXPRESS", DEFAULTS, 50)["reached"] == "with the defaults"


def test_a_hard_limit_past_the_target_is_never_reached() -> None:
    # Given a deployment without the cache, a service shared by its workflows at 10,000/s
    settings = replace(OPEN, workflows=10, definition_cache_seconds=0)
    modelled = scale.capacity(PROFILE, "EXPRESS", settings, 10_000)

    # Then the shared service's item (a partition's 3,000 RCU/s) cannot be raised
    assert modelled["reached"].startswith("no: a hard limit binds")
    assert "service's definition item" in modelled["reached"]


def test_a_ramp_takes_ten_seconds_per_thousand_executions() -> None:
    assert scale.ramp_seconds(999) == 10
    assert scale.ramp_seconds(3302) == 40


# --- quotas and the template's parameters -----------------------------------------------------


def test_the_quotas_are_the_documented_defaults() -> None:
    start = scale.quota("sfn_start_execution_standard")
    assert (start.value, start.burst, start.adjustable) == (300, 1300, True)
    express = scale.quota("sfn_start_execution_express")
    assert (express.value, express.burst) == (6000, 6000)
    transitions = scale.quota("sfn_state_transitions_standard")
    assert (transitions.value, transitions.burst) == (1500, 5000)
    assert scale.quota("sfn_open_executions_standard").value == 1_000_000
    assert scale.quota("lambda_concurrency").value == 1000
    scaling = scale.quota("lambda_scaling_rate")
    assert (scaling.value, scaling.adjustable) == (1000, False)
    api = scale.quota("http_api_account")
    assert (api.value, api.burst, api.adjustable) == (10000, 5000, True)
    assert scale.quota("dynamodb_partition_writes").value == 1000
    assert scale.quota("dynamodb_partition_reads").value == 3000
    assert not scale.quota("dynamodb_partition_reads").adjustable
    assert scale.quota("dynamodb_table_writes").value == 40000
    assert scale.quota("dynamodb_table_reads").value == 40000
    # each one cited
    for key, found in scale.QUOTAS.items():
        assert found.source.startswith("https://docs.aws.amazon.com/"), key
    with pytest.raises(KeyError):
        scale.quota("no such quota")


_TEMPLATE = """\
Parameters:
  ApiThrottlingRateLimit: {Type: Number, Default: 250}
  ApiThrottlingBurstLimit: {Type: Number, Default: 500}
  StepFunctionMemorySize: {Type: Number, Default: 1024}
Globals:
  Function: {MemorySize: 512}
Resources:
  StepFunction:
    Type: AWS::Serverless::Function
    Properties: {MemorySize: !Ref StepFunctionMemorySize}
  ApiFunction:
    Type: AWS::Serverless::Function
    Properties: {}
"""


def test_the_parameters_are_read_from_the_template(tmp_path: Path) -> None:
    # Given a template with its own throttling and memory, and no shard or cache parameter
    path = tmp_path / "template.yaml"
    path.write_text(_TEMPLATE)

    # When its parameters are read
    found = scale.template_parameters(path)

    # Then its defaults are taken, and the missing ones keep the issue's, saying so
    assert found["ApiThrottlingRateLimit"].value == 250
    assert found["ApiThrottlingRateLimit"].source == "template.yaml"
    assert found["ApiThrottlingBurstLimit"].value == 500
    assert found["StepFunctionMemorySize"].value == 1024
    assert found["EventIndexShards"].value == 16
    assert "not in template.yaml" in found["EventIndexShards"].source
    assert found["DefinitionCacheSeconds"].value == 1
    settings = scale.Settings.from_template(found, 100, workflows=10)
    assert (settings.api_rate_limit, settings.index_shards, settings.workflows) == (250, 16, 10)


def test_a_functions_memory_follows_its_ref_or_the_globals(tmp_path: Path) -> None:
    from machinery_core.local.template import Template

    path = tmp_path / "template.yaml"
    path.write_text(_TEMPLATE)
    document = Template.load(path).document
    assert scale.function_memory(document, "StepFunction") == 1024
    assert scale.function_memory(document, "ApiFunction") == 512


# --- the profile, from a case as counted ------------------------------------------------------


def _case() -> dict[str, Any]:
    return {
        "workflow": "process-text",
        "steps": 3,
        "per_event": {
            "http_api_requests": 1,
            "requests": {},
            "lambda": {
                "invocations": 2,
                "by_function": {"ApiFunction": 1, "StepFunction": 1},
                "by_label": {},
            },
            "dynamodb": {
                "reads": 3,
                "read_units": 5.0,
                "write_units": 8.0,
                "table_write_units": 5.0,
                "index_write_units": 3.0,
            },
            "s3": {"puts": 0, "gets": 0, "bytes_stored": 0},
            "stepfunctions": {"executions": 1, "executions_started": 1, "transitions": 3},
            "phases": {
                "intake": {
                    "read_units": 4.0,
                    "read_units_by_request": {
                        "dynamodb:BatchGetItem": 3.0,
                        "dynamodb:GetItem": 1.0,
                    },
                }
            },
        },
        "timings": {
            "lambda_duration_ms": {"ApiFunction": 20.0, "StepFunction": 40.0},
            "lambda_service_ms": {"ApiFunction": 0.0, "StepFunction": 10.0},
            "lambda_aws_ms": {"ApiFunction": 8.0, "StepFunction": 12.0},
            "lambda_gb_seconds": (20 + 40) / 1000 * 0.5,
            "lambda_gb_seconds_by_phase": {"intake": 0.01, "state loop": 0.02},
            "execution_ms": 50.0,
            "execution_ms_each": [50.0],
        },
        "definition_items": {
            "workflow": {"bytes": 900, "read_units": 1.0},
            "services": {
                name: {"bytes": 300, "read_units": 1.0}
                for name in ("reverse", "space-counter", "upper")
            },
        },
    }


def test_a_profile_is_read_from_the_counts() -> None:
    profile = scale.profile_of(_case())
    assert profile == replace(PROFILE, execution_ms=50.0)
    # The definitions' reads at intake: the GetItem and the BatchGetItem, 4 RRU
    assert profile.definition_read_units_counted == 4


# --- the cost at a service latency and memory size --------------------------------------------


def test_cpu_bound_work_scales_with_memory_up_to_a_vcpu() -> None:
    assert scale.cpu_factor(1769) == 1
    assert scale.cpu_factor(2048) == 1
    assert scale.cpu_factor(512) == pytest.approx(1769 / 512)
    assert scale.cpu_factor(256) == pytest.approx(2 * scale.cpu_factor(512))


def test_the_step_function_is_billed_its_overhead_and_the_services_time() -> None:
    # Given 30 ms of overhead at full speed and 3 steps of 100 ms
    [at_512] = scale.step_invocation_ms(PROFILE, 512, 100)
    [at_1024] = scale.step_invocation_ms(PROFILE, 1024, 100)

    # Then only the overhead is scaled
    assert at_512 == pytest.approx(30 * 1769 / 512 + 300)
    assert at_1024 == pytest.approx(30 * 1769 / 1024 + 300)
    # And taking the AWS requests' 12 ms as waiting, only the other 18 ms are
    [io] = scale.step_invocation_ms(PROFILE, 512, 100, aws_as_waiting=True)
    assert io == pytest.approx(18 * 1769 / 512 + 12 + 300)


def _costs() -> dict[str, Any]:
    case = _case()
    usages = {"sync-3": {m: report.usage_of(case) for m in ("STANDARD", "EXPRESS")}}
    return scale.latency_costs(
        {"sync-3": {"STANDARD": case, "EXPRESS": case}}, usages, workflows=("sync-3",)
    )


def test_the_cheapest_memory_size_follows_the_service_latency() -> None:
    rows = {(r["machine"], r["service_latency_ms"]): r for r in _costs()["rows"]}

    # When the services take 100 ms or more, the smallest memory waits cheapest
    for machine in ("STANDARD", "EXPRESS"):
        for latency in (100, 1000):
            assert rows[(machine, latency)]["cheapest"] == 256, (machine, latency)
    # At 0 ms on STANDARD, CPU-bound work costs the same GB-s at any size below a vCPU
    standard = rows[("STANDARD", 0)]["totals"]
    assert len({round(t, 2) for t in standard.values()}) == 1
    assert scale.tied_with_cheapest(standard) == [256, 512, 1024]
    # while an EXPRESS execution is billed the slower overhead's time
    express = rows[("EXPRESS", 0)]["totals"]
    assert express[1024] < express[256]
    assert rows[("EXPRESS", 0)]["cheapest"] == 1024


def test_the_modelled_usage_bills_the_step_function_at_its_memory() -> None:
    case = _case()
    usage = report.usage_of(case)
    modelled = scale.usage_at(
        usage, PROFILE, api_gb_seconds=0.01, memory_mb=1024, service_latency_ms=100
    )

    # The API as measured, the step function its ceil'd ms at 1 GB
    step_ms = math.ceil(30 * 1769 / 1024 + 300)
    assert modelled.lambda_gb_seconds == pytest.approx(0.01 + step_ms / 1000)
    # and the execution longer by the waiting and by the slower overhead
    assert modelled.execution_ms == pytest.approx(50 + 300 + 30 * (1769 / 1024 - 1))
    assert modelled.execution_ms_each == (pytest.approx(modelled.execution_ms),)
    cost = costs.cost_per_million(modelled, "EXPRESS")
    assert cost["total"] > costs.cost_per_million(usage, "EXPRESS")["total"]


def test_the_cheapest_memory_is_the_smaller_on_a_tie() -> None:
    assert scale.cheapest_memory({256: 1.001, 512: 1.004, 1024: 2.0}) == 256
    assert scale.cheapest_memory({256: 3.0, 512: 2.0, 1024: 2.5}) == 512


# --- the report's targets ---------------------------------------------------------------------


def test_the_targets_say_the_rate_with_the_defaults_and_with_the_increases() -> None:
    # Given the model of a run (the hand-built counts) on either type
    cases = {"sync-3": _case()}
    parameters = {
        name: scale.Parameter(name, value, "template.yaml")
        for name, value in scale.PARAMETERS.items()
    }
    modelled = scale.model(cases, cases, parameters, 100)
    assert modelled is not None

    # When the targets are judged
    found = {t["figure"]: t for t in report._scale_targets(modelled)}

    # Then one workflow and a deployment on EXPRESS, each saying the rate with the defaults
    # (the stage's 100 requests/s) and met with the documented increases
    one = found["Sustained events/s, one workflow, EXPRESS"]
    assert one["status"] == "met"
    assert one["measured"].startswith("100 events/s with the defaults")
    assert "3,000 with documented increases" in one["measured"]
    assert "ApiThrottlingRateLimit → 3,000" in one["note"]
    deployment = found["Sustained events/s, deployment (10 workflows), EXPRESS"]
    assert deployment["status"] == "met"
    assert "DynamoDB table-level write throughput quota → 50,000 WRU/s" in deployment["note"]
    assert len(found) == 2
    # And the section has the capacity and usage tables, with every quota's source
    text = "\n".join(report._scale_section({"scale": modelled}))
    assert "## 6. Capacity at scale" in text
    assert "| one workflow (process-text) | EXPRESS | 3,000 events/s | **100 events/s** |" in text
    assert "562 / 1,000 WCU/s (56.2 %)" in text
    assert scale.SFN_QUOTAS_URL in text
    # No model (no 3-step case): no target
    assert scale.model({}, None, parameters, 100) is None
    assert report._scale_targets(None) == []
