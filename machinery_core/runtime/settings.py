"""The deployment's settings: the Lambda environment template.yaml sets, read and validated once."""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

from machinery_core.adapters.executions import StateMachineType
from machinery_core.contract import EVENT_INDEX_SHARDS


class Settings(BaseModel):
    """One field per environment variable (its name is the alias); unknown ones are ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    table_name: str = Field(alias="TABLE_NAME", min_length=3)
    state_machine_arn: str = Field("", alias="STATE_MACHINE_ARN")
    state_machine_type: StateMachineType = Field(
        StateMachineType.STANDARD, alias="STATE_MACHINE_TYPE"
    )
    event_retention_days: PositiveInt = Field(30, alias="EVENT_RETENTION_DAYS")
    # How long a container keeps the definitions its intake read (adapters/store/recent.py).
    definition_cache_seconds: float = Field(1.0, alias="DEFINITION_CACHE_SECONDS", ge=0, le=60)
    event_index_shards: int = Field(EVENT_INDEX_SHARDS, alias="EVENT_INDEX_SHARDS", ge=1, le=64)
    # Comma-separated host names and networks service addresses may use (addresses.py).
    allowed_service_hosts: str = Field("", alias="ALLOWED_SERVICE_HOSTS")
    # The API's own URL for callback services; empty: the URL each request came in on.
    callback_base_url: str | None = Field(None, alias="CALLBACK_BASE_URL")
    notification_secret_arn: str = Field("", alias="NOTIFICATION_SECRET_ARN")
    # Where payloads past the threshold are stored; empty: an event keeps them in its item.
    payload_bucket: str = Field("", alias="PAYLOAD_BUCKET")
    # The timers' schedule group and the role they start the state machine as.
    schedule_group: str = Field("", alias="SCHEDULE_GROUP")
    scheduler_role_arn: str = Field("", alias="SCHEDULER_ROLE_ARN")

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        values = {name: value for name, value in environ.items() if value != ""}
        return cls.model_validate(values)
