"""`machinery apply`: register definition files, every service before any workflow.

A file holding one JSON object is a service definition when it has an `address`, a
workflow definition when it has `spec.services`, and is skipped otherwise (an event, say).
Each definition is read back first and PUT only when it differs, so applying the same
files twice changes nothing the second time. Two files that define the same service or
workflow are refused before anything is written: which one should win is not for apply to
guess.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from machinery_core.cli.client import ApiError, ClientError, MachineryClient

Kind = Literal["service", "workflow"]
Result = Literal["created", "updated", "unchanged", "skipped", "failed"]
RESULTS: tuple[Result, ...] = ("created", "updated", "unchanged", "skipped", "failed")
SECRETS_RESENT = "secret headers are write-only and cannot be compared: sent again"


@dataclass
class Definition:
    path: Path
    kind: Kind | None  # None: not a definition (`problem` says why)
    document: Any = None
    problem: str | None = None
    unreadable: bool = False  # not JSON at all: a failure, not a skip

    @property
    def name(self) -> str | None:
        name = self.document.get("name") if isinstance(self.document, dict) else None
        return name if isinstance(name, str) else None


@dataclass
class Outcome:
    path: Path
    result: Result
    kind: Kind | None = None
    name: str | None = None
    version: int | None = None
    note: str | None = None
    error: ApiError | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "file": str(self.path),
            "kind": self.kind,
            "name": self.name,
            "result": self.result,
        }
        if self.version is not None:
            body["version"] = self.version
        if self.note:
            body["note"] = self.note
        if self.error is not None:
            body["error"] = self.error.to_body()
        return body


def collect(paths: Iterable[Path]) -> list[Path]:
    """The files named, and every *.json under the folders named (sorted), each once (a file
    named twice, by a folder or another spelling of its path, is read once)."""
    files: list[Path] = []
    seen: set[Path] = set()
    for path in paths:
        found = sorted(p for p in path.rglob("*.json") if p.is_file()) if path.is_dir() else [path]
        for file in found:
            real = file.resolve()
            if real not in seen:
                seen.add(real)
                files.append(file)
    return files


def kind_of(document: Any) -> Kind | None:
    if not isinstance(document, dict) or not isinstance(document.get("name"), str):
        return None
    spec = document.get("spec")
    if isinstance(spec, dict) and "services" in spec:
        return "workflow"
    if "address" in document:
        return "service"
    return None


def read(path: Path) -> Definition:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        return Definition(path, None, problem=f"cannot read it as JSON: {error}", unreadable=True)
    kind = kind_of(document)
    if kind is None:
        return Definition(
            path,
            None,
            document,
            problem='neither a service (no "address") nor a workflow (no "spec.services")',
        )
    return Definition(path, kind, document)


def duplicates(definitions: Iterable[Definition]) -> list[tuple[Kind, str, list[Path]]]:
    """Each (kind, name) that more than one file defines, with those files, in file order."""
    files: dict[tuple[Kind, str], list[Path]] = {}
    for definition in definitions:
        if definition.kind is not None and definition.name is not None:
            files.setdefault((definition.kind, definition.name), []).append(definition.path)
    return [(kind, name, paths) for (kind, name), paths in files.items() if len(paths) > 1]


def refuse_duplicates(definitions: Iterable[Definition]) -> None:
    """ClientError (exit 2) naming each service or workflow defined by more than one file."""
    found = duplicates(definitions)
    if not found:
        return
    described = [f"{kind} {name!r} is defined in {_listed(paths)}" for kind, name, paths in found]
    if len(found) == 1:
        raise ClientError(f"{described[0]}: nothing was applied")
    raise ClientError(
        f"{len(found)} definitions are each defined in more than one file: nothing was applied",
        [
            {"path": f"{kind} {name}", "message": text}
            for (kind, name, _), text in zip(found, described, strict=True)
        ],
    )


def _listed(paths: list[Path]) -> str:
    """`both a and b`, or `a, b and c`."""
    names = [str(path) for path in paths]
    if len(names) == 2:
        return f"both {names[0]} and {names[1]}"
    return ", ".join(names[:-1]) + " and " + names[-1]


def ordered(definitions: Iterable[Definition]) -> list[Definition]:
    """Services, then workflows (each in file order), then what is not a definition."""
    rank = {"service": 0, "workflow": 1, None: 2}
    return sorted(definitions, key=lambda definition: rank[definition.kind])


def canonical(kind: Kind, document: Any) -> dict[str, Any] | None:
    """The definition as the API stores it (defaults filled in, aliases resolved), with secret
    header values masked; None if it does not validate (the API will say why)."""
    from pydantic import ValidationError

    from machinery_core.domain.models import Service, Workflow

    try:
        validated: Service | Workflow = (
            Service.model_validate(document).redacted()
            if kind == "service"
            else Workflow.model_validate(document)
        )
    except ValidationError:
        return None
    return validated.model_dump(mode="json")


def has_secrets(document: Any) -> bool:
    from machinery_core.domain.models import REDACTED

    secrets = document.get("secret_headers") if isinstance(document, dict) else None
    return isinstance(secrets, dict) and any(value != REDACTED for value in secrets.values())


def apply_one(client: MachineryClient, definition: Definition) -> Outcome:
    """Create, update or leave one definition. Unreachable propagates: nothing more can run."""
    outcome = Outcome(definition.path, "skipped", definition.kind, definition.name)
    if definition.kind is None:
        outcome.result = "failed" if definition.unreadable else "skipped"
        outcome.note = definition.problem
        return outcome
    kind, document = definition.kind, definition.document
    try:
        current = client.get_definition(kind, str(definition.name))
        secrets = has_secrets(document)
        if current is not None and not secrets:
            wanted = canonical(kind, document)
            if wanted is not None and wanted == canonical(kind, current.get("definition")):
                outcome.result = "unchanged"
                outcome.version = current.get("version")
                return outcome
        answer, created = client.put_definition(kind, document)
    except ApiError as error:
        outcome.result = "failed"
        outcome.error = error
        return outcome
    outcome.result = "created" if created else "updated"
    outcome.version = answer.get("version")
    if secrets and not created:
        outcome.note = SECRETS_RESENT
    return outcome
