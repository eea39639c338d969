"""The Machinery API over HTTP, for the `machinery` command.

One requests.Session. A request to an API that is not on this machine is signed with
SigV4 for `execute-api` by botocore's own signer, with the credentials botocore finds
(environment, profile, SSO, instance role...), as an IAM-authenticated API Gateway needs.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from requests.auth import AuthBase

from machinery_core import __version__
from machinery_core.contract import (
    CONSUMER_POLICY,
    MANAGEMENT_POLICY,
    ROUTE_POLICIES,
    SEND_RETRIES,
    retry_after_seconds,
    route_of,
)

CONNECT_TIMEOUT = 5.0
# POST /e answered 429 (API Gateway's throttling) or 503 (AWS throttled the intake: nothing
# was acknowledged) is tried again, after the Retry-After the answer gives, else after 1, 2,
# 4... s: SEND_RETRIES times at most, and never a wait longer than MAX_SEND_DELAY.
MAX_SEND_DELAY = 60.0
RETRIED_STATUSES = frozenset({429, 503})
READ_TIMEOUT = 40.0  # longer than the API's longest sync wait (25 s)
SIGNING_SERVICE = "execute-api"
# {api-id}.execute-api.{region}.amazonaws.com (and the .cn partition)
_EXECUTE_API_HOST = re.compile(
    r"^[a-z0-9]+\.execute-api\.([a-z]{2}(?:-[a-z]+)+-\d+)\.amazonaws\.com(?:\.cn)?$"
)
# The headers the signature covers besides host and x-amz-date: the ones that say what the
# body is. requests adds others (User-Agent, Accept-Encoding...) that a proxy may rewrite.
_SIGNED_HEADERS = ("content-type", "idempotency-key")
# Set on the answer to a request whose Idempotency-Key an earlier request already used.
REPLAYED_HEADER = "Idempotent-Replayed"


class ClientError(Exception):
    """Why a command could not do what was asked; `exit_code` is the command's exit status."""

    exit_code = 2

    def __init__(self, message: str, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []

    def to_body(self) -> dict[str, Any]:
        return {"message": self.message, "details": self.details}


class ApiError(ClientError):
    """The API answered 4xx (exit 2) or 5xx (exit 3) with `{"message", "details"}`."""

    def __init__(
        self,
        status_code: int,
        message: str,
        details: list[dict[str, Any]] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, details)
        self.status_code = status_code
        self.exit_code = 2 if status_code < 500 else 3
        # seconds the API asked to wait before trying again (its Retry-After), if it did
        self.retry_after = retry_after

    @classmethod
    def of(cls, response: requests.Response) -> ApiError:
        message = f"{response.status_code} {response.reason or ''}".strip()
        details: list[dict[str, Any]] = []
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            message = str(body.get("message") or body.get("Message") or message)
            raw = body.get("details")
            if isinstance(raw, list):
                details = [item if isinstance(item, dict) else {"message": item} for item in raw]
        elif response.text.strip():
            message = f"{message}: {response.text.strip()[:500]}"
        asked = retry_after_seconds(response.headers.get("Retry-After"), datetime.now(UTC))
        return cls(response.status_code, message, details, asked)

    def to_body(self) -> dict[str, Any]:
        return {**super().to_body(), "status_code": self.status_code}


class Unreachable(ClientError):
    """No answer: the connection failed or timed out (exit 3)."""

    exit_code = 3

    def __init__(self, api_url: str, reason: str) -> None:
        super().__init__(f"cannot reach the Machinery API at {api_url} ({reason})")
        self.api_url = api_url
        self.reason = reason


class SigningError(ClientError):
    """A request must be signed but cannot be: no credentials, or no region."""


def lacking_policy(method: str, path: str) -> str | None:
    """What a signed request refused with 403 probably lacks: the policy granting its route."""
    route = route_of(method, path.split("?", 1)[0])
    granted_by = ROUTE_POLICIES.get(route or "", ())
    if not granted_by:
        return None
    if CONSUMER_POLICY in granted_by:
        return (
            f"your AWS identity may not call {route}: it probably lacks {CONSUMER_POLICY} "
            f"(or {MANAGEMENT_POLICY}, which allows every route); both are in the stack's outputs"
        )
    return (
        f"your AWS identity may not call {route}: it probably lacks {MANAGEMENT_POLICY} "
        f"({CONSUMER_POLICY} does not allow changing services and workflows); it is in the "
        "stack's outputs"
    )


def is_loopback(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def region_of(url: str) -> str | None:
    """The region of an execute-api URL, else AWS_REGION or AWS_DEFAULT_REGION."""
    found = _EXECUTE_API_HOST.match((urlsplit(url).hostname or "").lower())
    if found:
        return found.group(1)
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None


def find_credentials() -> Any:
    """botocore's credential chain (None when it finds nothing)."""
    from botocore.session import Session

    return Session().get_credentials()


class SigV4(AuthBase):
    """Signs each prepared request with botocore's SigV4Auth."""

    def __init__(self, credentials: Any, region: str, service: str = SIGNING_SERVICE) -> None:
        self.credentials = credentials
        self.region = region
        self.service = service

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        body = request.body
        if isinstance(body, str):
            body = body.encode()
        headers = {
            name: value
            for name, value in request.headers.items()
            if name.lower() in _SIGNED_HEADERS
        }
        signed = AWSRequest(method=request.method, url=request.url, data=body, headers=headers)
        frozen = self.credentials.get_frozen_credentials()
        SigV4Auth(frozen, self.service, self.region).add_auth(signed)
        for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
            if name in signed.headers:
                request.headers[name] = signed.headers[name]
        return request


def new_session() -> requests.Session:
    """The HTTP session of a client (tests replace it with one that connects nowhere)."""
    session = requests.Session()
    session.headers["User-Agent"] = f"machinery-cli/{__version__}"
    return session


def query_string(params: dict[str, Any] | None) -> str:
    """`?a=1&b=2`, percent-encoded as SigV4 canonicalizes it (RFC 3986 unreserved kept)."""
    pairs = [
        f"{quote(str(key), safe='-_.~')}={quote(str(value), safe='-_.~')}"
        for key, value in (params or {}).items()
        if value is not None
    ]
    return "?" + "&".join(pairs) if pairs else ""


def path_part(value: str) -> str:
    return quote(value, safe="")


def follow_links(answer: Any, fetch: Callable[[str], Any]) -> Any:
    """`answer` (an event's or a step's, as the API gives it) with every value it links put
    in place, in `answer` itself: the API holds a large event's payloads inline only up to a
    budget, and past it replaces each value by `{"$ref": href, "bytes": n}` and lists it in
    `linked_payloads` (`path`, a JSON pointer into the answer; `href`, a path under the API's
    URL that answers the value). `fetch(href)` gives a value; each href is fetched once,
    however many places name it. `linked_payloads` stays: it says which values came apart.
    """
    if not isinstance(answer, dict):
        return answer
    links = answer.get("linked_payloads") or []
    if not isinstance(links, list):
        raise ClientError(f"linked_payloads is not a list: {links!r:.200}")
    fetched: dict[str, Any] = {}
    for link in links:
        path = link.get("path") if isinstance(link, dict) else None
        href = link.get("href") if isinstance(link, dict) else None
        if not isinstance(path, str) or not isinstance(href, str):
            raise ClientError(f"a link without a path and an href: {link!r:.200}")
        if href not in fetched:
            fetched[href] = fetch(href)
        _put_at(answer, path, fetched[href])
    return answer


def _put_at(document: Any, pointer: str, value: Any) -> None:
    """Replace what the JSON pointer (RFC 6901) `pointer` names in `document` by `value`."""
    if not pointer.startswith("/"):
        raise ClientError(f"a link's path is not a JSON pointer into the answer: {pointer!r}")
    *parents, last = [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:]]
    try:
        container = document
        for token in parents:
            container = container[_key(container, token)]
        key = _key(container, last)
        container[key]  # a link replaces a placeholder: it must name one
        container[key] = value
    except (KeyError, IndexError, TypeError, ValueError) as error:
        raise ClientError(f"a link's path names nothing in the answer: {pointer!r}") from error


def _key(container: Any, token: str) -> str | int:
    if not isinstance(container, list):
        return token
    if not token.isdigit():
        raise ValueError(token)
    return int(token)


class MachineryClient:
    """The API at `api_url`. `sign`: None signs a non-loopback API when credentials exist."""

    def __init__(
        self,
        api_url: str,
        *,
        sign: bool | None = None,
        session: requests.Session | None = None,
        read_timeout: float = READ_TIMEOUT,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        parts = urlsplit(self.api_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ClientError(f"the API URL must be an http:// or https:// URL, got {api_url!r}")
        self.session = session or new_session()
        self.read_timeout = read_timeout
        self.signed = False
        # the linked payloads read, by href: content-addressed, so they never change
        self.payloads: dict[str, Any] = {}
        # `send` tries again when the API is throttled or busy (429, 503), as it says when
        self.send_attempts = SEND_RETRIES + 1
        self.sleep: Callable[[float], None] = time.sleep
        self.on_retry: Callable[[ApiError, float, int], None] = lambda *_: None
        if sign is False or (sign is None and is_loopback(self.api_url)):
            return
        credentials = find_credentials()
        if credentials is None:
            if sign:
                raise SigningError(
                    "--sign: no AWS credentials found (environment, ~/.aws, SSO or role)"
                )
            return
        region = region_of(self.api_url)
        if region is None:
            raise SigningError(
                f"cannot tell the region of {self.api_url} to sign for: set AWS_REGION"
            )
        self.session.auth = SigV4(credentials, region)
        self.signed = True

    # --- transport ------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        """The answer of a 2xx or 3xx; ApiError for 4xx/5xx, Unreachable without one."""
        url = self.api_url + path + query_string(params)
        sent = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        try:
            response = self.session.request(
                method, url, data=data, headers=sent, timeout=(CONNECT_TIMEOUT, self.read_timeout)
            )
        except requests.Timeout as error:
            raise Unreachable(self.api_url, "timed out") from error
        except requests.ConnectionError as error:
            raise Unreachable(self.api_url, _reason(error)) from error
        if response.status_code >= 400:
            refused = ApiError.of(response)
            if response.status_code == 403 and not self.signed:
                refused.details.append(
                    {
                        "path": "Authorization",
                        "message": "the request was not signed: an IAM-protected API needs "
                        "AWS credentials (or --sign)",
                    }
                )
            elif response.status_code == 403:
                lacking = lacking_policy(method, path)
                if lacking is not None:
                    refused.details.append({"path": "Authorization", "message": lacking})
            raise refused
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.decode(method, path, self.request(method, path, **kwargs))

    def decode(self, method: str, path: str, response: requests.Response) -> Any:
        """The answer's JSON body; ClientError when it has none (not a Machinery API)."""
        try:
            return response.json()
        except ValueError as error:
            raise ClientError(
                f"{method} {path} answered {response.status_code} with a body that is not JSON"
                f" ({response.headers.get('Content-Type', 'no content type')}): is "
                f"{self.api_url} a Machinery API?"
            ) from error

    # --- the API --------------------------------------------------------------------

    def get_definition(self, kind: str, name: str) -> dict[str, Any] | None:
        """GET /services/{name} or /workflows/{name}; None when there is none."""
        try:
            record: dict[str, Any] = self.json("GET", f"/{kind}s/{path_part(name)}")
        except ApiError as error:
            if error.status_code == 404:
                return None
            raise
        return record

    def put_definition(self, kind: str, definition: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """PUT /services/{name} or /workflows/{name}: (the answer, whether it was created)."""
        name = str(definition.get("name"))
        response = self.request("PUT", f"/{kind}s/{path_part(name)}", body=definition)
        answer: dict[str, Any] = response.json()
        return answer, response.status_code == 201

    def send(
        self,
        workflow_id: str,
        request: dict[str, Any],
        *,
        wait: int = 0,
        idempotency_key: str | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """POST /e/{workflow_id}: (the acknowledgement, or the ended event within `wait` s;
        whether it is a replay: an earlier request with this Idempotency-Key created the event).

        The API says so in the body (`"replayed": true`) or in an `Idempotent-Replayed: true`
        header: an ended event's view (200 with `wait`) has no `replayed` field.
        """
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        path = f"/e/{path_part(workflow_id)}"
        for attempt in range(1, self.send_attempts + 1):
            try:
                response = self.request(
                    "POST",
                    path,
                    body=request,
                    params={"wait": wait} if wait else None,
                    headers=headers,
                )
                break
            except ApiError as error:
                delay = send_delay(error, attempt)
                if delay is None or attempt == self.send_attempts:
                    raise
                self.on_retry(error, delay, attempt)
                self.sleep(delay)
        answer = self.decode("POST", path, response)
        if not isinstance(answer, dict) or not isinstance(answer.get("event_id"), str):
            raise ClientError(
                f"POST {path} answered {response.status_code} without an event_id: is "
                f"{self.api_url} a Machinery API?"
            )
        replayed = answer.get("replayed") is True or (
            response.headers.get(REPLAYED_HEADER, "").strip().lower() == "true"
        )
        return answer, replayed

    def event(self, event_id: str) -> dict[str, Any]:
        """GET /events/{id}: the event whole, every value it links fetched and in place."""
        answer: dict[str, Any] = self.whole(self.json("GET", f"/events/{path_part(event_id)}"))
        return answer

    def step(self, event_id: str, step: str) -> dict[str, Any]:
        """GET /events/{id}/steps/{step} (a path as `3.1.0` or `4.0:7`, an id or a service):
        the step's record whole, every value it links fetched and in place."""
        path = f"/events/{path_part(event_id)}/steps/{quote(step, safe=':')}"
        answer: dict[str, Any] = self.whole(self.json("GET", path))
        return answer

    def whole(self, answer: Any) -> Any:
        """An event's or a step's answer with its linked values fetched and put in place."""
        return follow_links(answer, self.payload)

    def payload(self, href: str) -> Any:
        """The value a link names: GET href (a path under the API's URL), read once."""
        if not href.startswith("/"):
            raise ClientError(f"a link's href is not a path under the API's URL: {href!r:.200}")
        if href not in self.payloads:
            self.payloads[href] = self.json("GET", href)
        return self.payloads[href]

    def workflow(self, workflow_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = self.json("GET", f"/workflows/{path_part(workflow_id)}")
        return answer

    def events(
        self, workflow_id: str, limit: int, cursor: str | None = None, status: str | None = None
    ) -> dict[str, Any]:
        answer: dict[str, Any] = self.json(
            "GET",
            f"/workflows/{path_part(workflow_id)}/events",
            params={"limit": limit, "cursor": cursor, "status": status},
        )
        return answer

    def versions(
        self, kind: str, name: str, limit: int, cursor: str | None = None
    ) -> dict[str, Any]:
        """GET /services/{name}/versions or /workflows/{id}/versions: a page, newest first."""
        answer: dict[str, Any] = self.json(
            "GET",
            f"/{kind}s/{path_part(name)}/versions",
            params={"limit": limit, "cursor": cursor},
        )
        return answer

    def version(self, kind: str, name: str, number: int) -> dict[str, Any]:
        answer: dict[str, Any] = self.json("GET", f"/{kind}s/{path_part(name)}/versions/{number}")
        return answer

    def set_live(
        self, workflow_id: str, version: int, canary: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """PUT /workflows/{id}/live: the version new events run, and a canary's share."""
        body: dict[str, Any] = {"version": version}
        if canary is not None:
            body["canary"] = canary
        answer: dict[str, Any] = self.json(
            "PUT", f"/workflows/{path_part(workflow_id)}/live", body=body
        )
        return answer

    def diagram(self, kind: str, identifier: str, fmt: str) -> str:
        """GET /{kind}s/{id}/diagram?format=...: the Mermaid text or the SVG document."""
        response = self.request(
            "GET", f"/{kind}s/{path_part(identifier)}/diagram", params={"format": fmt}
        )
        return response.text

    def stats(self, workflow_id: str, window: str) -> dict[str, Any]:
        """GET /workflows/{id}/stats?window=...: the workflow's events of the window, counted."""
        answer: dict[str, Any] = self.json(
            "GET", f"/workflows/{path_part(workflow_id)}/stats", params={"window": window}
        )
        return answer

    def openapi(self) -> dict[str, Any]:
        answer: dict[str, Any] = self.json("GET", "/openapi.json")
        return answer


def send_delay(error: ApiError, attempt: int) -> float | None:
    """How long to wait before sending again after `attempt` failed; None: do not."""
    if error.status_code not in RETRIED_STATUSES:
        return None
    delay = error.retry_after if error.retry_after is not None else 2.0 ** (attempt - 1)
    return min(delay, MAX_SEND_DELAY)


def _reason(error: requests.ConnectionError) -> str:
    """`Connection refused` rather than urllib3's whole retry story."""
    text = str(error)
    found = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if found:
        return found.group(1).strip()
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "the host name does not resolve"
    return text if len(text) < 200 else type(error).__name__
