"""The capacity model: how many events a second a deployment sustains, and what binds first.

Pure functions of the counts per event that counting.py measured in the same run (never of
copies of them), the template's parameters and the default AWS quotas below (us-east-1: some
Step Functions quotas differ by region). Every limit is linear in the rate, so each one
allows `limit / usage per event` events a second and the lowest of them binds.

Facts of the design the model rests on (docs/architecture.md):

- DynamoDB base table: each event's item is its own partition key (EVENT#{id}), so the
  table's writes spread over its partitions; the hottest base-table key is one event's own
  item, whose writes (all of them, at worst within one second) do not grow with the rate.
- The listing index (GSI1) takes an index write at each of an event's status changes
  (created, running, ended: the index write units per event are the counts'), spread over
  `EventIndexShards` write shards per workflow by a hash of the event id: the hottest index
  partition of a workflow takes `rate × index WRU per event / shards`.
- At intake every event reads its workflow's definition item and each of its services'
  (strongly consistent: 1 RRU per 4 KB). Each API container keeps them for
  `DefinitionCacheSeconds` (0: no cache), so it reads an item at most once per TTL: the reads
  a second of one definition item are `min(rate, API concurrency / TTL) × its RRU`, the API
  concurrency being `rate × the API invocation's duration`.
- A deployment's rate is spread evenly over W workflows; a service item may be shared by all
  of them (the worst case the model takes for the services' items).
- Lambda concurrency: each function's invocations per event times their measured durations
  (this machine, the handlers in process); the step function's, its overhead (measured
  duration less the time it waited on the local services) plus `steps × service latency`.

The duration model of the step function (its overhead plus the services' time) also prices
an event at a given service latency and memory size (`latency_costs`): Lambda allocates CPU
in proportion to memory, one vCPU at 1,769 MB, so the overhead (assumed CPU-bound) is scaled
by `max(1, 1769 / memory)`, and the time waiting on services is not.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import costs

ROOT = Path(__file__).resolve().parents[1]
REGION = "us-east-1"
QUOTAS_AS_OF = "2026-12-04"

# --- the sources -------------------------------------------------------------------------------

SFN_QUOTAS_URL = "https://docs.aws.amazon.com/step-functions/latest/dg/service-quotas.html"
# The throttling tables of the page above could not be read here (only its opening is
# stored); their figures are those of the Step Functions developer guide's own source,
# awsdocs/aws-step-functions-developer-guide, doc_source/limits-overview.md (archived), whose
# StartExecution, open-execution and state-transition tables the page still carries. A newer
# page may show a higher state-transition refill rate for these regions: on STANDARD the
# StartExecution refill binds first either way (1 execution per event, 3 transitions).
SFN_QUOTAS_ARCHIVED = (
    "https://github.com/awsdocs/aws-step-functions-developer-guide/blob/main/"
    "doc_source/limits-overview.md"
)
LAMBDA_QUOTAS_URL = "https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html"
LAMBDA_SCALING_URL = "https://docs.aws.amazon.com/lambda/latest/dg/scaling-behavior.html"
LAMBDA_MEMORY_URL = "https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html"
APIGW_QUOTAS_URL = "https://docs.aws.amazon.com/apigateway/latest/developerguide/limits.html"
DYNAMODB_QUOTAS_URL = (
    "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html"
)
DYNAMODB_PARTITIONS_URL = (
    "https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/bp-partition-key-design.html"
)

# At 1,769 MB a function has the equivalent of one vCPU (LAMBDA_MEMORY_URL).
LAMBDA_VCPU_MB = 1769


# --- quotas --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Quota:
    """A default AWS quota or limit, per account and region (us-east-1) unless `scope` says."""

    name: str
    value: float
    unit: str
    adjustable: bool  # a soft quota AWS raises on request; False: a hard limit
    source: str
    burst: float | None = None  # a token bucket's size, where the value is its refill rate
    scope: str = "per account, per region"
    note: str = ""


QUOTAS: dict[str, Quota] = {
    "dynamodb_partition_writes": Quota(
        "DynamoDB writes of one partition",
        1000,
        "WCU/s",
        False,
        DYNAMODB_PARTITIONS_URL,
        scope="per partition (table or index)",
    ),
    "dynamodb_partition_reads": Quota(
        "DynamoDB reads of one partition",
        3000,
        "RCU/s",
        False,
        DYNAMODB_PARTITIONS_URL,
        scope="per partition (table or index)",
    ),
    "dynamodb_table_writes": Quota(
        "DynamoDB on-demand table write throughput",
        40000,
        "WRU/s",
        True,
        DYNAMODB_QUOTAS_URL,
        scope="per table, and per global secondary index apart",
    ),
    "dynamodb_table_reads": Quota(
        "DynamoDB on-demand table read throughput",
        40000,
        "RRU/s",
        True,
        DYNAMODB_QUOTAS_URL,
        scope="per table",
    ),
    "sfn_start_execution_standard": Quota(
        "Step Functions StartExecution, STANDARD",
        300,
        "requests/s",
        True,
        SFN_QUOTAS_URL,
        burst=1300,
        note="us-east-1, us-west-2, eu-west-1; 150/s (bucket 800) in other regions",
    ),
    "sfn_start_execution_express": Quota(
        "Step Functions StartExecution, EXPRESS",
        6000,
        "requests/s",
        True,
        SFN_QUOTAS_URL,
        burst=6000,
    ),
    "sfn_state_transitions_standard": Quota(
        "Step Functions state transitions, STANDARD",
        1500,
        "transitions/s",
        True,
        SFN_QUOTAS_URL,
        burst=5000,
        note="us-east-1, us-west-2, eu-west-1; 500/s (bucket 800) in other regions; "
        "unlimited on EXPRESS; new accounts start lower",
    ),
    "sfn_open_executions_standard": Quota(
        "Step Functions open executions, STANDARD",
        1_000_000,
        "executions",
        True,
        SFN_QUOTAS_URL,
        note="does not apply to EXPRESS",
    ),
    "lambda_concurrency": Quota(
        "Lambda concurrent executions",
        1000,
        "executions",
        True,
        LAMBDA_QUOTAS_URL,
        note="shared by every function of the account in the region; new accounts start lower",
    ),
    "lambda_scaling_rate": Quota(
        "Lambda concurrency scaling rate",
        1000,
        "execution environments per 10 s",
        False,
        LAMBDA_SCALING_URL,
        scope="per function, per region",
        note="how fast a function's concurrency grows, not how far",
    ),
    "http_api_account": Quota(
        "API Gateway throttle quota (HTTP, REST and WebSocket APIs together)",
        10000,
        "requests/s",
        True,
        APIGW_QUOTAS_URL,
        burst=5000,
        note="the burst is set by AWS from the rate, not adjustable apart",
    ),
}


def quota(key: str) -> Quota:
    """A quota by its key in QUOTAS (KeyError: no such quota)."""
    return QUOTAS[key]


def quota_sources() -> dict[str, str]:
    return {
        "step_functions": SFN_QUOTAS_URL,
        "step_functions_tables_read_from": SFN_QUOTAS_ARCHIVED,
        "lambda": LAMBDA_QUOTAS_URL,
        "lambda_scaling": LAMBDA_SCALING_URL,
        "lambda_memory": LAMBDA_MEMORY_URL,
        "api_gateway": APIGW_QUOTAS_URL,
        "dynamodb": DYNAMODB_QUOTAS_URL,
        "dynamodb_partitions": DYNAMODB_PARTITIONS_URL,
    }


# --- the template's parameters --------------------------------------------------------------

# Parameters the model reads from template.yaml, with the default issue 18 gives each one
# for as long as the template does not have it yet.
PARAMETERS: dict[str, float] = {
    "ApiThrottlingRateLimit": 100,
    "ApiThrottlingBurstLimit": 200,
    "EventIndexShards": 16,
    "DefinitionCacheSeconds": 1,
    "StepFunctionMemorySize": 512,
}


@dataclass(frozen=True)
class Parameter:
    name: str
    value: float
    source: str  # "template.yaml", or why the default stands in


def template_parameters(path: Path = ROOT / "template.yaml") -> dict[str, Parameter]:
    """The defaults of PARAMETERS as template.yaml sets them (parsed with the local runtime's
    loader, CloudFormation tags kept); a parameter the template lacks keeps the issue's
    default, and says so. The step function's memory: its parameter, else the MemorySize
    of the StepFunction resource (or of Globals)."""
    from machinery_core.local.template import Template

    document = Template.load(path).document
    declared = document.get("Parameters") or {}
    found = {}
    for name, fallback in PARAMETERS.items():
        if name in declared and "Default" in declared[name]:
            found[name] = Parameter(name, float(declared[name]["Default"]), "template.yaml")
        elif name == "StepFunctionMemorySize":
            memory = function_memory(document, "StepFunction")
            found[name] = Parameter(
                name, float(memory), "template.yaml (the StepFunction's MemorySize)"
            )
        else:
            found[name] = Parameter(
                name, float(fallback), "issue 18's default (not in template.yaml yet)"
            )
    return found


def function_memory(document: dict[str, Any], logical_id: str) -> int:
    """A function's MemorySize in a template: its own, else Globals', else Lambda's 128; a
    `!Ref` to a parameter resolved to its default, as a deploy without overrides would."""
    props = document["Resources"][logical_id].get("Properties") or {}
    globals_ = (document.get("Globals") or {}).get("Function") or {}
    value = props.get("MemorySize", globals_.get("MemorySize", 128))
    if isinstance(value, dict) and "Ref" in value:
        value = document["Parameters"][value["Ref"]]["Default"]
    return int(value)


# --- what one event takes -----------------------------------------------------------------------


@dataclass(frozen=True)
class EventProfile:
    """What one event of a workflow takes, per event, from the counts."""

    workflow: str
    steps: int  # service calls
    http_requests: float  # the POST, and a callback's
    executions_started: float  # StartExecution, by the functions and by timers
    transitions: float  # of every execution of the event
    table_write_units: float
    index_write_units: float
    read_units: float  # every read, as counted
    # of which the intake's reads of the definitions (counted: 0 where a cache served them)
    definition_read_units_counted: float
    workflow_item_read_units: float  # one strongly consistent read of the workflow's item
    service_item_read_units: tuple[float, ...]  # the same, of each of its services' items
    api_invocations: float
    api_ms: float  # the API function's invocations together, per event
    step_invocations: float
    step_ms: float  # the step function's invocations together, the local services' time in
    step_service_ms: float  # of which it waited on the (local) services
    step_aws_ms: float = 0.0  # and in AWS requests (moto, in process)
    execution_ms: float = 0.0  # its executions' durations together
    execution_ms_each: tuple[float, ...] = ()

    @property
    def step_overhead_ms(self) -> float:
        """The step function's own time per event: its duration less the services'."""
        return max(self.step_ms - self.step_service_ms, 0.0)

    def step_function_ms(self, service_latency_ms: float) -> float:
        """The step function's duration per event with services answering in that time."""
        return self.step_overhead_ms + self.steps * service_latency_ms


def profile_of(case: dict[str, Any]) -> EventProfile:
    """An event's profile from a case as counting.py reports it."""
    per, timings = case["per_event"], case["timings"]
    dynamo, sfn = per["dynamodb"], per["stepfunctions"]
    functions = per["lambda"]["by_function"]
    durations = timings.get("lambda_duration_ms") or {}
    waited = timings.get("lambda_service_ms") or {}
    in_aws = timings.get("lambda_aws_ms") or {}
    intake = (per.get("phases") or {}).get("intake") or {}
    by_request = intake.get("read_units_by_request")
    if by_request is None:  # counted before reads were split by request: all the intake's
        counted = float(intake.get("read_units", 0.0))
    else:
        counted = float(
            by_request.get("dynamodb:GetItem", 0.0) + by_request.get("dynamodb:BatchGetItem", 0.0)
        )
    items = case.get("definition_items") or {}
    workflow_item = (items.get("workflow") or {}).get("read_units", 1.0)
    services = items.get("services") or {}
    return EventProfile(
        workflow=case["workflow"],
        steps=case["steps"],
        http_requests=per["http_api_requests"],
        executions_started=sfn.get("executions_started") or sfn.get("executions") or 1,
        transitions=sfn["transitions"] or 0,
        table_write_units=dynamo["table_write_units"],
        index_write_units=dynamo["index_write_units"],
        read_units=dynamo["read_units"],
        definition_read_units_counted=counted,
        workflow_item_read_units=float(workflow_item),
        service_item_read_units=tuple(float(s["read_units"]) for s in services.values()),
        api_invocations=functions.get("ApiFunction", 0),
        api_ms=durations.get("ApiFunction", 0.0),
        step_invocations=functions.get("StepFunction", 0),
        step_ms=durations.get("StepFunction", 0.0),
        step_service_ms=waited.get("StepFunction", 0.0),
        step_aws_ms=in_aws.get("StepFunction", 0.0),
        execution_ms=timings.get("execution_ms") or 0.0,
        execution_ms_each=tuple(timings.get("execution_ms_each") or ()),
    )


# --- the limits -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """What the model assumes beyond the counts: the template's parameters and the traffic."""

    service_latency_ms: float = 100.0
    index_shards: int = 16  # EventIndexShards
    definition_cache_seconds: float = 1.0  # DefinitionCacheSeconds (0: no cache)
    api_rate_limit: float = 100.0  # ApiThrottlingRateLimit
    api_burst_limit: float = 200.0  # ApiThrottlingBurstLimit
    workflows: int = 1  # the rate spread evenly over this many workflows

    @classmethod
    def from_template(
        cls, parameters: dict[str, Parameter], service_latency_ms: float, workflows: int = 1
    ) -> Settings:
        return cls(
            service_latency_ms=service_latency_ms,
            index_shards=int(parameters["EventIndexShards"].value),
            definition_cache_seconds=parameters["DefinitionCacheSeconds"].value,
            api_rate_limit=parameters["ApiThrottlingRateLimit"].value,
            api_burst_limit=parameters["ApiThrottlingBurstLimit"].value,
            workflows=workflows,
        )


@dataclass(frozen=True)
class Constraint:
    """One limit: at `rate` events a second it is used `fixed + rate × per_event`."""

    key: str
    name: str
    per_event: float
    limit: float
    unit: str
    adjustable: bool  # a soft quota or a template parameter; False: a hard limit
    raise_what: str  # the quota or parameter that moves it
    source: str
    fixed: float = 0.0
    note: str = ""
    # what to set `raise_what` to for a rate; by default the limit to the usage there
    required: Callable[[float], str] | None = field(default=None, compare=False, repr=False)

    def usage(self, rate: float) -> float:
        return self.fixed + rate * self.per_event

    def max_rate(self) -> float:
        """The highest rate the limit allows (infinite if the usage does not grow)."""
        if self.fixed > self.limit:
            return 0.0
        if self.per_event <= 0:
            return math.inf
        return (self.limit - self.fixed) / self.per_event

    def needed_at(self, rate: float) -> str:
        """What to raise, and to what, for `rate`; empty if the limit already allows it."""
        if self.usage(rate) <= self.limit:
            return ""
        if self.required is not None:
            return self.required(rate)
        return f"{self.raise_what} → {_count(math.ceil(self.usage(rate)))} {self.unit}"


def cache_factor(api_seconds_per_event: float, ttl_seconds: float, workflows: int = 1) -> float:
    """The share of a workflow's events that read its definition item: every one without a
    cache; with one, `min(1, API concurrency / TTL / the workflow's rate)`, the API
    concurrency being the whole deployment's (`rate × api seconds`: any container serves
    any workflow)."""
    if ttl_seconds <= 0:
        return 1.0
    return min(1.0, workflows * api_seconds_per_event / ttl_seconds)


def index_shards_needed(rate: float, index_wru: float, workflows: int = 1) -> int:
    """The write shards a workflow's listing needs for its hottest partition to stay within a
    partition's writes."""
    limit = quota("dynamodb_partition_writes").value
    return max(1, math.ceil(rate / workflows * index_wru / limit))


def constraints(
    profile: EventProfile, machine: str, settings: Settings, *, shared_services: bool = True
) -> list[Constraint]:
    """Every limit on the rate of `profile`'s events on `machine` (STANDARD or EXPRESS).

    `shared_services`: with several workflows, one service item is read by the events of
    every workflow (the worst case), not by one workflow's only."""
    if machine not in ("STANDARD", "EXPRESS"):
        raise ValueError(machine)
    w = max(settings.workflows, 1)
    api_s = profile.api_ms / 1000
    step_s = profile.step_function_ms(settings.service_latency_ms) / 1000
    ttl = settings.definition_cache_seconds
    partition_w = quota("dynamodb_partition_writes")
    partition_r = quota("dynamodb_partition_reads")
    shard_share = 1 / (w * settings.index_shards)
    found = [
        Constraint(
            "index_partition",
            "DynamoDB: hottest listing-index (GSI1) partition",
            profile.index_write_units * shard_share,
            partition_w.value,
            partition_w.unit,
            False,
            "EventIndexShards",
            partition_w.source,
            note=f"{_num(profile.index_write_units)} index WRU per event over "
            f"{settings.index_shards} shards" + (f" of each of {w} workflows" if w > 1 else ""),
            required=lambda rate: (
                f"EventIndexShards → {index_shards_needed(rate, profile.index_write_units, w)}"
            ),
        ),
        Constraint(
            "table_partition",
            "DynamoDB: hottest base-table partition (an event's own item)",
            0.0,
            partition_w.value,
            partition_w.unit,
            False,
            "-",
            partition_w.source,
            fixed=profile.table_write_units,
            note="each event its own key: at most its "
            f"{_num(profile.table_write_units)} table WRU in a second, whatever the rate",
        ),
    ]
    factor = cache_factor(api_s, ttl, w)
    cache = (
        f"read once per {_num(ttl)} s by each API container"
        if ttl > 0
        else "no cache: every event reads it"
    )
    found.append(
        Constraint(
            "definition_item",
            "DynamoDB: a workflow's definition item (hot read key)",
            profile.workflow_item_read_units * factor / w,
            partition_r.value,
            partition_r.unit,
            False,
            "DefinitionCacheSeconds",
            partition_r.source,
            note=f"{_num(profile.workflow_item_read_units)} RRU a read, {cache}",
            required=lambda rate: _ttl_needed(rate, profile.workflow_item_read_units, api_s),
        )
    )
    if profile.service_item_read_units:
        # read by the events of every workflow (shared), or of one workflow's
        readers = 1 if shared_services else w
        largest = max(profile.service_item_read_units)
        found.append(
            Constraint(
                "service_item",
                "DynamoDB: a service's definition item (hot read key)",
                largest * cache_factor(api_s, ttl, readers) / readers,
                partition_r.value,
                partition_r.unit,
                False,
                "DefinitionCacheSeconds",
                partition_r.source,
                note=f"{_num(largest)} RRU a read, {cache}"
                + (", a service every workflow calls" if w > 1 and shared_services else ""),
                required=lambda rate: _ttl_needed(rate, largest, api_s),
            )
        )
    table_w, table_r = quota("dynamodb_table_writes"), quota("dynamodb_table_reads")
    definitions = profile.workflow_item_read_units + sum(profile.service_item_read_units)
    other_reads = max(profile.read_units - profile.definition_read_units_counted, 0.0)
    found += [
        Constraint(
            "table_writes",
            "DynamoDB: table write throughput",
            profile.table_write_units,
            table_w.value,
            table_w.unit,
            True,
            "DynamoDB table-level write throughput quota",
            table_w.source,
        ),
        Constraint(
            "index_writes",
            "DynamoDB: listing index (GSI1) write throughput",
            profile.index_write_units,
            table_w.value,
            table_w.unit,
            True,
            "DynamoDB table-level write throughput quota (the index's)",
            table_w.source,
        ),
        Constraint(
            "table_reads",
            "DynamoDB: table read throughput",
            other_reads + definitions * factor,
            table_r.value,
            table_r.unit,
            True,
            "DynamoDB table-level read throughput quota",
            table_r.source,
            note=f"{_num(other_reads)} RRU per event besides the definitions' "
            f"{_num(definitions)} ({cache})",
        ),
    ]
    key = "sfn_start_execution_" + machine.lower()
    start = quota(key)
    found.append(
        Constraint(
            "start_execution",
            "Step Functions: StartExecution",
            profile.executions_started,
            start.value,
            start.unit,
            True,
            f"Step Functions StartExecution refill rate ({machine})",
            start.source,
            note=f"bucket {_count(start.burst)}" if start.burst else "",
        )
    )
    if machine == "STANDARD":
        transitions = quota("sfn_state_transitions_standard")
        open_executions = quota("sfn_open_executions_standard")
        execution_s = (profile.execution_ms + profile.steps * settings.service_latency_ms) / 1000
        found += [
            Constraint(
                "state_transitions",
                "Step Functions: state transitions (STANDARD)",
                profile.transitions,
                transitions.value,
                transitions.unit,
                True,
                "Step Functions StateTransition refill rate (STANDARD)",
                transitions.source,
                note=f"bucket {_count(transitions.burst)}",
            ),
            Constraint(
                "open_executions",
                "Step Functions: open executions (STANDARD)",
                execution_s,
                open_executions.value,
                open_executions.unit,
                True,
                "Step Functions open executions quota",
                open_executions.source,
                note=f"each execution open {_num(execution_s * 1000, 0)} ms",
            ),
        ]
    concurrency = quota("lambda_concurrency")
    found.append(
        Constraint(
            "lambda_concurrency",
            "Lambda: concurrent executions (both functions)",
            api_s + step_s,
            concurrency.value,
            "executions",
            True,
            "Lambda concurrent executions quota",
            concurrency.source,
            note=f"ApiFunction {_num(profile.api_ms, 1)} ms + StepFunction "
            f"{_num(profile.step_overhead_ms, 1)} ms + {profile.steps} × "
            f"{_num(settings.service_latency_ms, 0)} ms of services, per event",
        )
    )
    account = quota("http_api_account")
    found += [
        Constraint(
            "http_api_account",
            "API Gateway: account throttle quota",
            profile.http_requests,
            account.value,
            account.unit,
            True,
            "API Gateway account throttle quota",
            account.source,
            note=f"burst {_count(account.burst)}",
        ),
        Constraint(
            "api_stage",
            "API Gateway: the stage's throttling (ApiThrottlingRateLimit)",
            profile.http_requests,
            settings.api_rate_limit,
            "requests/s",
            True,
            "ApiThrottlingRateLimit",
            "template.yaml",
            note=f"burst ApiThrottlingBurstLimit {_count(settings.api_burst_limit)}",
            required=lambda rate: (
                f"ApiThrottlingRateLimit → {_count(math.ceil(rate * profile.http_requests))}"
            ),
        ),
    ]
    return found


def _ttl_needed(rate: float, read_units: float, api_seconds: float) -> str:
    """The DefinitionCacheSeconds that keeps one item's reads within a partition's: each of
    the deployment's `rate × api_seconds` API containers reads it once per TTL."""
    limit = quota("dynamodb_partition_reads").value
    ttl = api_seconds * rate * read_units / limit
    return f"DefinitionCacheSeconds → ≥ {ttl:.2g} s (any cache; 0 reads it every event)"


def binding(found: list[Constraint]) -> Constraint:
    """The constraint that allows the lowest rate (the first listed, on a tie)."""
    return min(found, key=lambda c: c.max_rate())


def ramp_seconds(concurrency: float) -> float:
    """How long a function takes from no concurrency to `concurrency`, at the scaling rate
    (1,000 execution environments every 10 s)."""
    return math.ceil(concurrency / quota("lambda_scaling_rate").value) * 10.0


def capacity(
    profile: EventProfile,
    machine: str,
    settings: Settings,
    target: float | None,
    *,
    shared_services: bool = True,
) -> dict[str, Any]:
    """The highest sustainable rate with these settings and the default quotas, what binds,
    each limit's usage at `target` (or at that rate) and what to raise to reach it."""
    found = constraints(profile, machine, settings, shared_services=shared_services)
    first = binding(found)
    sustainable = first.max_rate()
    others = [c for c in found if c is not first]
    second = binding(others) if others else None
    rate = target if target is not None else sustainable
    raises = [(c, c.needed_at(rate)) for c in found if c.needed_at(rate)]
    hard = [c for c, _ in raises if not c.adjustable]
    if target is None:
        reached = "no target"
    elif not raises:
        reached = "with the defaults"
    elif hard:
        reached = "no: a hard limit binds (" + ", ".join(c.name for c in hard) + ")"
    else:
        reached = "with documented increases"
    api_s = profile.api_ms / 1000
    step_s = profile.step_function_ms(settings.service_latency_ms) / 1000
    return {
        "machine": machine,
        "workflows": settings.workflows,
        "target": target,
        "sustainable": _finite(sustainable),
        "binding": first.key,
        "binding_name": first.name,
        # to go as far as the next limit allows (its rate rounded down)
        "raise_first": first.needed_at(
            math.floor(second.max_rate()) if second and math.isfinite(second.max_rate()) else rate
        )
        or first.raise_what,
        "next": None if second is None else {"key": second.key, "name": second.name},
        "next_rate": None if second is None else _finite(second.max_rate()),
        "raises": [{"key": c.key, "raise": text} for c, text in raises],
        "reached": reached,
        "rate_shown": rate,
        "constraints": [
            {
                "key": c.key,
                "name": c.name,
                "per_event": c.per_event,
                "fixed": c.fixed,
                "limit": c.limit,
                "unit": c.unit,
                "adjustable": c.adjustable,
                "raise_what": c.raise_what,
                "source": c.source,
                "note": c.note,
                "max_rate": _finite(c.max_rate()),
                "usage": c.usage(rate),
                "percent": 100 * c.usage(rate) / c.limit if c.limit else None,
                "needed": c.needed_at(rate),
            }
            for c in found
        ],
        "concurrency": {
            "ApiFunction": rate * api_s,
            "StepFunction": rate * step_s,
        },
        "ramp_seconds": {
            "ApiFunction": ramp_seconds(rate * api_s),
            "StepFunction": ramp_seconds(rate * step_s),
        },
    }


# Issue 18's targets: events a second, on EXPRESS (STANDARD: what it reaches, no target).
TARGETS: dict[tuple[str, str], float | None] = {
    ("one workflow", "STANDARD"): None,
    ("one workflow", "EXPRESS"): 3000,
    ("deployment", "STANDARD"): None,
    ("deployment", "EXPRESS"): 10000,
}
DEPLOYMENT_WORKFLOWS = 10
SCOPE_RATES = {"one workflow": 3000, "deployment": 10000}  # where STANDARD's usage is shown


def model(
    cases: dict[str, dict[str, Any]],
    express_cases: dict[str, dict[str, Any]] | None,
    parameters: dict[str, Parameter],
    service_latency_ms: float,
    deployment_workflows: int = DEPLOYMENT_WORKFLOWS,
    workflow: str = "sync-3",
) -> dict[str, Any] | None:
    """The capacity table of the run: `workflow`'s counts on each type (EXPRESS: its own run
    where there is one), for one workflow and for a deployment of `deployment_workflows`,
    with the template's settings; and the same without the definition cache."""
    if workflow not in cases:
        return None
    profiles = {
        "STANDARD": profile_of(cases[workflow]),
        "EXPRESS": profile_of((express_cases or {}).get(workflow) or cases[workflow]),
    }
    rows = []
    for (scope, machine), target in TARGETS.items():
        workflows = deployment_workflows if scope == "deployment" else 1
        settings = Settings.from_template(parameters, service_latency_ms, workflows)
        shown = target if target is not None else SCOPE_RATES[scope]
        row = capacity(profiles[machine], machine, settings, target)
        at_scope_rate = capacity(profiles[machine], machine, settings, shown)
        uncached = capacity(
            profiles[machine], machine, replace(settings, definition_cache_seconds=0), shown
        )
        rows.append(
            {
                "scope": scope,
                **row,
                "usage_rate": shown,
                "usage": at_scope_rate["constraints"],
                "concurrency_at_usage_rate": at_scope_rate["concurrency"],
                "ramp_seconds_at_usage_rate": at_scope_rate["ramp_seconds"],
                "without_cache": {
                    "sustainable": uncached["sustainable"],
                    "binding": uncached["binding_name"],
                    "hot_reads": [
                        c
                        for c in uncached["constraints"]
                        if c["key"] in ("definition_item", "service_item")
                    ],
                    "reached": uncached["reached"] if target is not None else "no target",
                    "raises": uncached["raises"],
                },
            }
        )
    return {
        "workflow": workflow,
        "workflow_name": cases[workflow]["workflow"],
        "region": REGION,
        "service_latency_ms": service_latency_ms,
        "deployment_workflows": deployment_workflows,
        "parameters": {name: asdict(p) for name, p in parameters.items()},
        "profiles": {machine: asdict(p) for machine, p in profiles.items()},
        "quotas": {key: asdict(q) for key, q in QUOTAS.items()},
        "quotas_as_of": QUOTAS_AS_OF,
        "sources": quota_sources(),
        "rows": rows,
    }


# --- cost at a service latency and memory size -----------------------------------------------

MEMORY_SIZES = (256, 512, 1024)
SERVICE_LATENCIES_MS = (0, 100, 1000)


def cpu_factor(memory_mb: float) -> float:
    """How much slower CPU-bound work runs at `memory_mb` than on a whole vCPU (1,769 MB),
    Lambda allocating CPU in proportion to memory: `max(1, 1769 / memory)`. This machine's
    core stands for a whole vCPU."""
    return max(1.0, LAMBDA_VCPU_MB / memory_mb)


def overhead_at(profile: EventProfile, memory_mb: float, aws_as_waiting: bool = False) -> float:
    """The step function's overhead per event at `memory_mb`: CPU-bound, so scaled by
    `cpu_factor`. With `aws_as_waiting`, the time in AWS requests (moto serving them in
    process here, the network on Lambda) is taken as waiting, not scaled."""
    if not aws_as_waiting:
        return profile.step_overhead_ms * cpu_factor(memory_mb)
    waiting = min(profile.step_aws_ms, profile.step_overhead_ms)
    return (profile.step_overhead_ms - waiting) * cpu_factor(memory_mb) + waiting


def step_invocation_ms(
    profile: EventProfile,
    memory_mb: float,
    service_latency_ms: float,
    aws_as_waiting: bool = False,
) -> list[float]:
    """Each step-function invocation's duration: its share of the overhead at `memory_mb`
    and of the steps' waiting on services (not scaled)."""
    invocations = max(int(round(profile.step_invocations)), 1)
    overhead = overhead_at(profile, memory_mb, aws_as_waiting) / invocations
    waiting = profile.steps * service_latency_ms / invocations
    return [overhead + waiting] * invocations


def usage_at(
    usage: costs.Usage,
    profile: EventProfile,
    api_gb_seconds: float,
    memory_mb: float,
    service_latency_ms: float,
    aws_as_waiting: bool = False,
) -> costs.Usage:
    """`usage` (an event's, as measured) with the step function at `memory_mb` and services
    answering in `service_latency_ms`: the step function billed its invocations' durations
    (each rounded up to 1 ms) at that memory, the API function as measured; each execution
    longer by the waiting and by the slower overhead, spread evenly over the executions."""
    step_gb_seconds = sum(
        math.ceil(ms) / 1000 * memory_mb / 1024
        for ms in step_invocation_ms(profile, memory_mb, service_latency_ms, aws_as_waiting)
    )
    longer = (
        profile.steps * service_latency_ms
        + overhead_at(profile, memory_mb, aws_as_waiting)
        - profile.step_overhead_ms
    )
    each = usage.execution_ms_each
    return replace(
        usage,
        lambda_gb_seconds=api_gb_seconds + step_gb_seconds,
        execution_ms=usage.execution_ms + longer,
        execution_ms_each=tuple(ms + longer / len(each) for ms in each) if each else (),
    )


def latency_costs(
    cases: dict[str, dict[str, Any]],
    usages: dict[str, dict[str, costs.Usage]],
    workflows: tuple[str, ...] = ("sync-3", "callback"),
    memories: tuple[int, ...] = MEMORY_SIZES,
    latencies: tuple[float, ...] = SERVICE_LATENCIES_MS,
) -> dict[str, Any]:
    """Cost per 1M events of `workflows` on each type, at each service latency and memory
    size of the step function, and the cheapest memory size at each latency.

    `cases`: workflow -> machine -> the case as counted; `usages`: the same, its usage."""
    rows = []
    for key in workflows:
        for machine, case in (cases.get(key) or {}).items():
            usage = usages[key][machine]
            profile = profile_of(case)
            phases = case["timings"].get("lambda_gb_seconds_by_phase") or {}
            api_gb_seconds = sum(v for phase, v in phases.items() if phase != "state loop")
            for latency in latencies:
                totals, durations, totals_io = {}, {}, {}
                for memory in memories:
                    modelled = usage_at(usage, profile, api_gb_seconds, memory, latency)
                    totals[memory] = costs.cost_per_million(modelled, machine)["total"]
                    durations[memory] = sum(step_invocation_ms(profile, memory, latency))
                    waiting = usage_at(usage, profile, api_gb_seconds, memory, latency, True)
                    totals_io[memory] = costs.cost_per_million(waiting, machine)["total"]
                rows.append(
                    {
                        "workflow": key,
                        "workflow_name": case["workflow"],
                        "machine": machine,
                        "service_latency_ms": latency,
                        "totals": totals,
                        "step_function_ms": durations,
                        "cheapest": cheapest_memory(totals),
                        # the AWS requests' time taken as waiting (not CPU-scaled)
                        "totals_aws_as_waiting": totals_io,
                        "cheapest_aws_as_waiting": cheapest_memory(totals_io),
                    }
                )
    return {
        "memories": list(memories),
        "latencies": list(latencies),
        "vcpu_mb": LAMBDA_VCPU_MB,
        "source": LAMBDA_MEMORY_URL,
        "rows": rows,
    }


def cheapest_memory(totals: dict[int, float]) -> int:
    """The memory size of the lowest cost (to the cent; the smaller on a tie)."""
    return min(totals, key=lambda m: (round(totals[m], 2), m))


def tied_with_cheapest(totals: dict[int, float]) -> list[int]:
    """Every memory size whose cost is the cheapest's, to the cent."""
    lowest = round(totals[cheapest_memory(totals)], 2)
    return sorted(m for m, total in totals.items() if round(total, 2) == lowest)


# --- formatting helpers (shared with report.py) ------------------------------------------------


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _num(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "-"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.{digits}f}"


def _count(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"
