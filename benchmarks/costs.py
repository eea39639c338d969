"""The cost model: what 1 million events would cost on AWS, from the counts per event.

Every price is here, in one place, with the date it was written down. They are the published
us-east-1 on-demand prices, without free tiers (which do not scale with volume) and without
what the event's own counts do not drive: CloudWatch Logs and X-Ray (the template turns
tracing on), data transfer, DynamoDB storage, point-in-time recovery, KMS. S3 storage is
modelled: the payloads an event keeps in the payload bucket (only a large event has any) stay
there its whole retention, so each event adds its bytes for that long.

An event's run is a sequence of executions (segments): EXPRESS bills each one as a request
and its own duration (rounded up on its own); STANDARD bills the state transitions of them
all. A wait outside an execution is an EventBridge Scheduler timer: each one that fires is a
scheduled invocation (it starts the next execution); creating and deleting schedules is not
billed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

PRICES_AS_OF = "2026-11-27"


@dataclass(frozen=True)
class Prices:
    http_api_per_million_requests: float = 1.00  # the first 300 million a month
    lambda_per_million_requests: float = 0.20
    # x86_64 (the price issue 6 names). The template deploys arm64, at $0.0000133334/GB-s:
    # the Lambda duration figures here are 25% above what arm64 would be billed.
    lambda_per_gb_second: float = 0.0000166667
    dynamodb_per_million_write_units: float = 0.625  # on-demand write request units
    dynamodb_per_million_read_units: float = 0.125  # on-demand read request units
    sfn_standard_per_thousand_transitions: float = 0.025
    sfn_express_per_million_requests: float = 1.00
    sfn_express_per_gb_second: float = 0.00001667  # the first 1,000 hours of GB-s a month
    secrets_manager_per_ten_thousand_calls: float = 0.05
    # S3 Standard: PUT (COPY, POST, LIST) and GET (SELECT, all other) requests, and storage
    # (the first 50 TB a month, billed per binary GB, by the byte-hour)
    s3_per_thousand_puts: float = 0.005
    s3_per_thousand_gets: float = 0.0004
    s3_per_gb_month: float = 0.023
    # EventBridge Scheduler (written down 2026-12-04): each schedule that fires (past the 14
    # million a month free, left out like every free tier); its API (CreateSchedule,
    # DeleteSchedule) is not billed
    scheduler_per_million_invocations: float = 1.00
    scheduler_per_million_api_requests: float = 0.0


PRICES = Prices()
SOURCES = {
    "http_api": "https://aws.amazon.com/api-gateway/pricing/ (HTTP APIs, first 300M requests)",
    "lambda": "https://aws.amazon.com/lambda/pricing/ (requests; duration, billed per 1 ms)",
    "dynamodb": "https://aws.amazon.com/dynamodb/pricing/on-demand/ (write and read request units)",
    "step_functions": "https://aws.amazon.com/step-functions/pricing/ (STANDARD per state "
    "transition, retries included; EXPRESS per request plus duration rounded up to 100 ms "
    "at memory billed in 64 MB chunks)",
    "secrets_manager": "https://aws.amazon.com/secrets-manager/pricing/ (API calls)",
    "s3": "https://aws.amazon.com/s3/pricing/ (S3 Standard: PUT and GET requests; storage "
    "per GB-month, the first 50 TB)",
    "scheduler": "https://aws.amazon.com/eventbridge/pricing/ (Scheduler: per scheduled "
    "invocation, $1.00 per million after 14 million free a month; schedules' creation and "
    "deletion are not billed)",
}
EXPRESS_MEMORY_MB = 64  # the smallest chunk: an execution carrying {"event_id", "plan"}
EXPRESS_BILLING_MS = 100
EVENTS = 1_000_000
# How long an event's payloads stay in S3: the template's EventRetentionDays (its default),
# after which the bucket's lifecycle rule expires them with their event.
RETENTION_DAYS = 30
HOURS_PER_MONTH = 730  # S3 bills byte-hours; a month is 365 × 24 / 12 hours on average
GB = 2**30  # S3 bills binary gigabytes


@dataclass
class Usage:
    """What one event uses."""

    http_requests: float
    lambda_invocations: float
    lambda_gb_seconds: float  # each invocation's duration rounded up to 1 ms, times its memory
    read_units: float
    write_units: float
    transitions: float  # STANDARD: of every execution of the event
    executions: float
    execution_ms: float  # EXPRESS bills its duration: one execution's, unless execution_ms_each
    secrets_calls: float = 0.0
    s3_puts: float = 0.0
    s3_gets: float = 0.0
    s3_bytes_stored: float = 0.0  # kept for RETENTION_DAYS
    # each execution's duration, when the event's run is several (EXPRESS bills each apart)
    execution_ms_each: tuple[float, ...] = ()
    scheduler_invocations: float = 0.0  # timers fired: each starts an execution
    scheduler_requests: float = 0.0  # CreateSchedule, DeleteSchedule


def s3_gb_months(bytes_stored: float, retention_days: float = RETENTION_DAYS) -> float:
    """The GB-months of `bytes_stored` kept `retention_days`."""
    return bytes_stored / GB * retention_days * 24 / HOURS_PER_MONTH


def express_billed_ms(usage: Usage) -> float:
    """The milliseconds EXPRESS bills for one event: each execution's duration rounded up to
    EXPRESS_BILLING_MS on its own (`execution_ms_each`), or, when measured as one,
    `executions` times `execution_ms` rounded up."""
    if usage.execution_ms_each:
        return float(
            sum(
                math.ceil(ms / EXPRESS_BILLING_MS) * EXPRESS_BILLING_MS
                for ms in usage.execution_ms_each
            )
        )
    return float(
        usage.executions * math.ceil(usage.execution_ms / EXPRESS_BILLING_MS) * EXPRESS_BILLING_MS
    )


def cost_per_million(usage: Usage, machine: str, prices: Prices = PRICES) -> dict[str, float]:
    """Dollars per 1M events, by item, for a STANDARD or EXPRESS state machine."""
    costs = {
        "http_api": usage.http_requests * prices.http_api_per_million_requests,
        "lambda_requests": usage.lambda_invocations * prices.lambda_per_million_requests,
        "lambda_duration": usage.lambda_gb_seconds * prices.lambda_per_gb_second * EVENTS,
        "dynamodb_writes": usage.write_units * prices.dynamodb_per_million_write_units,
        "dynamodb_reads": usage.read_units * prices.dynamodb_per_million_read_units,
        "secrets_manager": usage.secrets_calls
        * prices.secrets_manager_per_ten_thousand_calls
        * EVENTS
        / 10_000,
        "s3_puts": usage.s3_puts * prices.s3_per_thousand_puts * EVENTS / 1000,
        "s3_gets": usage.s3_gets * prices.s3_per_thousand_gets * EVENTS / 1000,
        "s3_storage": s3_gb_months(usage.s3_bytes_stored) * prices.s3_per_gb_month * EVENTS,
        "scheduler": usage.scheduler_invocations * prices.scheduler_per_million_invocations
        + usage.scheduler_requests * prices.scheduler_per_million_api_requests,
    }
    if machine == "STANDARD":
        costs["step_functions"] = (
            usage.transitions * prices.sfn_standard_per_thousand_transitions * EVENTS / 1000
        )
    elif machine == "EXPRESS":
        gb_seconds = express_billed_ms(usage) / 1000 * EXPRESS_MEMORY_MB / 1024
        costs["step_functions"] = (
            usage.executions * prices.sfn_express_per_million_requests
            + gb_seconds * prices.sfn_express_per_gb_second * EVENTS
        )
    else:
        raise ValueError(machine)
    costs["total"] = sum(costs.values())
    return {key: round(value, 4) for key, value in costs.items()}


def one_state_per_step(intake: Usage, one_step_loop: Usage, steps: int) -> Usage:
    """The baseline: the state loop handing back to the state machine after every step.

    One step-function invocation per service step, each costing what the measured 1-step
    event's state loop costs (it loads the event, runs one step, checkpoints), and the
    transitions of Run -> Route per step, then Done: 2N + 1. The intake is the event's own.
    """
    return Usage(
        http_requests=intake.http_requests,
        lambda_invocations=intake.lambda_invocations + steps * one_step_loop.lambda_invocations,
        lambda_gb_seconds=intake.lambda_gb_seconds + steps * one_step_loop.lambda_gb_seconds,
        read_units=intake.read_units + steps * one_step_loop.read_units,
        write_units=intake.write_units + steps * one_step_loop.write_units,
        transitions=2 * steps + 1,
        executions=1,
        execution_ms=steps * one_step_loop.execution_ms,
    )


def prices_table() -> dict[str, object]:
    return {
        "as_of": PRICES_AS_OF,
        "region": "us-east-1",
        **asdict(PRICES),
        "s3_retention_days": RETENTION_DAYS,
        "sources": SOURCES,
    }
