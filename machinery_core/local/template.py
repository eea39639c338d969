"""Reading template.yaml: the one source of truth for what the local runtime deploys."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class _CloudFormationLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags kept as `{"Fn::X": ...}` / `{"Ref": ...}`."""


def _construct_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CloudFormationLoader.add_multi_constructor("!", _construct_tag)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    pattern: re.Pattern[str]

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"


@dataclass
class FunctionSpec:
    logical_id: str
    code_uri: Path
    handler: str
    timeout_seconds: int
    memory_mb: int
    environment: dict[str, Any]
    routes: list[Route] = field(default_factory=list)


@dataclass
class Template:
    path: Path
    document: dict[str, Any]

    @classmethod
    def load(cls, path: Path) -> Template:
        with path.open() as stream:
            return cls(path=path, document=yaml.load(stream, Loader=_CloudFormationLoader))  # noqa: S506

    @property
    def resources(self) -> dict[str, Any]:
        resources: dict[str, Any] = self.document["Resources"]
        return resources

    def resource_of_type(self, kind: str) -> tuple[str, dict[str, Any]]:
        matches = [(name, res) for name, res in self.resources.items() if res["Type"] == kind]
        if len(matches) != 1:
            raise ValueError(f"template.yaml should have exactly one {kind}, found {len(matches)}")
        return matches[0]

    def table_properties(self) -> dict[str, Any]:
        properties: dict[str, Any] = self.resource_of_type("AWS::DynamoDB::Table")[1]["Properties"]
        return properties

    def create_table(self, dynamodb: Any, table_name: str) -> None:
        """Create the template's table, TTL and backups included, through a DynamoDB client."""
        props = dict(self.table_properties())
        ttl = props.pop("TimeToLiveSpecification", None)
        pitr = props.pop("PointInTimeRecoverySpecification", None)
        sse = props.pop("SSESpecification", None)
        params: dict[str, Any] = {"TableName": table_name, **props}
        if sse:
            params["SSESpecification"] = {"Enabled": bool(sse.get("SSEEnabled"))}
        dynamodb.create_table(**params)
        if ttl:
            dynamodb.update_time_to_live(
                TableName=table_name,
                TimeToLiveSpecification={
                    "AttributeName": ttl["AttributeName"],
                    "Enabled": ttl["Enabled"],
                },
            )
        if pitr:
            dynamodb.update_continuous_backups(
                TableName=table_name,
                PointInTimeRecoverySpecification={
                    "PointInTimeRecoveryEnabled": pitr["PointInTimeRecoveryEnabled"]
                },
            )

    def create_bucket(self, s3: Any, bucket: str) -> None:
        """Create the template's bucket with its encryption, public access block and
        lifecycle rule (the retention its parameter defaults to), through an S3 client."""
        props = self.resource_of_type("AWS::S3::Bucket")[1]["Properties"]
        s3.create_bucket(Bucket=bucket)
        encryption = [
            {
                "ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"],
                "BucketKeyEnabled": rule.get("BucketKeyEnabled", False),
            }
            for rule in props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        ]
        s3.put_bucket_encryption(
            Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": encryption}
        )
        s3.put_public_access_block(
            Bucket=bucket, PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"]
        )
        rules = []
        for rule in props["LifecycleConfiguration"]["Rules"]:
            days = self.resolved(rule["ExpirationInDays"])
            rules.append(
                {
                    "ID": rule["Id"],
                    "Status": rule["Status"],
                    "Filter": {"Prefix": rule.get("Prefix", "")},
                    "Expiration": {"Days": int(days)},
                }
            )
        s3.put_bucket_lifecycle_configuration(
            Bucket=bucket, LifecycleConfiguration={"Rules": rules}
        )

    def resolved(self, value: Any) -> Any:
        """A property's value; a `!Ref` to a parameter, its default, as a deploy would."""
        if isinstance(value, dict) and set(value) == {"Ref"}:
            return self.document["Parameters"][value["Ref"]]["Default"]
        return value

    def functions(self) -> dict[str, FunctionSpec]:
        defaults = self.document.get("Globals", {}).get("Function", {})
        specs = {}
        for name, resource in self.resources.items():
            if resource["Type"] != "AWS::Serverless::Function":
                continue
            props = resource["Properties"]
            environment = {
                **defaults.get("Environment", {}).get("Variables", {}),
                **props.get("Environment", {}).get("Variables", {}),
            }
            routes = [
                _route(event["Properties"]["Method"], event["Properties"]["Path"])
                for event in props.get("Events", {}).values()
                if event["Type"] == "HttpApi"
            ]
            specs[name] = FunctionSpec(
                logical_id=name,
                code_uri=(self.path.parent / props["CodeUri"]).resolve(),
                handler=props["Handler"],
                timeout_seconds=int(props.get("Timeout", defaults.get("Timeout", 3))),
                memory_mb=int(
                    self.resolved(props.get("MemorySize", defaults.get("MemorySize", 128)))
                ),
                environment=environment,
                routes=routes,
            )
        return specs

    def state_machine(self) -> tuple[str, dict[str, Any]]:
        name, resource = self.resource_of_type("AWS::Serverless::StateMachine")
        return name, resource["Properties"]

    def asl(self, substitutions: dict[str, str] | None = None) -> str:
        """The state machine's definition as deployed, `${...}` filled from `substitutions`."""
        _, props = self.state_machine()
        text = json.dumps(props["Definition"], indent=2)
        for key, value in (substitutions or {}).items():
            text = text.replace("${" + key + "}", value)
        return text


def callback_tasks(definition: dict[str, Any], where: str = "") -> list[str]:
    """Where a Task of an ASL definition waits for a task token (`Resource` ending in
    `.waitForTaskToken`), as JSON pointers, nested Parallel branches and Map iterators
    included: what an EXPRESS state machine may not have."""
    found = []
    for name, state in (definition.get("States") or {}).items():
        at = f"{where}/States/{name}"
        resource = state.get("Resource")
        if state.get("Type") == "Task" and str(resource).endswith(".waitForTaskToken"):
            found.append(f"{at}/Resource")
        for index, branch in enumerate(state.get("Branches") or []):
            found += callback_tasks(branch, f"{at}/Branches/{index}")
        for key in ("Iterator", "ItemProcessor"):
            if isinstance(state.get(key), dict):
                found += callback_tasks(state[key], f"{at}/{key}")
    return found


def _route(method: str, path: str) -> Route:
    pattern = re.escape(path)
    pattern = re.sub(r"\\\{(\w+)\\\+\\\}", r"(?P<\1>.+)", pattern)
    pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", pattern)
    return Route(method=method.upper(), path=path, pattern=re.compile(f"^{pattern}$"))


def default_template() -> Path:
    """template.yaml at the root of the checkout this package runs from, else in the cwd."""
    candidate = Path(__file__).resolve().parents[2] / "template.yaml"
    return candidate if candidate.exists() else Path.cwd() / "template.yaml"


if __name__ == "__main__":
    # `python -m machinery_core.local.template` prints the ASL, for statelint.
    sys.stdout.write(Template.load(default_template()).asl() + "\n")
