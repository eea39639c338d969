"""The address guard: which service and notification URLs are refused, and when.

Nothing here reaches the network except 127.0.0.1: names are resolved by fake resolvers,
public addresses are only parsed, and a transport that records instead of connecting is
mounted wherever a broken guard would otherwise send a request.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from loopback import FakeResolver, Loopback, Unreachable

from machinery_core.adapters.addresses import (
    LOOPBACK_HOSTS,
    PUBLIC_ONLY,
    AddressPolicy,
    AddressRefused,
    UnresolvedHost,
)
from machinery_core.adapters.invoker import ServiceInvoker
from machinery_core.domain.errors import InvalidDefinition
from machinery_core.domain.models import Service
from machinery_core.runtime.dependencies import Dependencies


def service(address: str) -> Service:
    return Service.model_validate(
        {"name": "upper", "address": address, "spec": {"inputs": {}, "outputs": {}}}
    )


# --- registration: literal addresses -----------------------------------------------------

REFUSED = [
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://[fd00:ec2::254]/", "metadata"),
    ("http://[::ffff:169.254.169.254]/", "metadata"),
    ("http://[64:ff9b::a9fe:a9fe]/", "metadata"),  # NAT64 of 169.254.169.254
    ("http://169.254.10.1/", "link-local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://10.1.2.3/", "private"),
    ("http://172.16.0.1:8080/", "private"),
    ("http://172.31.255.254/", "private"),
    ("http://192.168.1.10/", "private"),
    ("http://[fc00::1]/", "private"),
    ("http://127.0.0.1:5001/", "loopback"),
    ("http://127.8.9.10/", "loopback"),
    ("http://[::1]:5001/", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),
    ("http://localhost:5001/", "loopback"),
    ("http://LOCALHOST./", "loopback"),
    ("http://api.localhost/", "loopback"),
    ("http://2130706433/", "loopback"),  # 127.0.0.1 as one decimal number
    ("http://127.1/", "loopback"),  # shortened
    ("http://0x7f.0.0.1/", "loopback"),  # hexadecimal
    ("http://0177.0.0.1/", "loopback"),  # octal
    ("http://%31%32%37.0.0.1/", "loopback"),  # percent-encoded: urllib3 decodes it
    ("http://evil.example\\@127.0.0.1/", "loopback"),  # urlsplit and urllib3 disagree
    ("http://0.0.0.0:5001/", "unspecified"),
    ("http://0/", "unspecified"),
    ("http://[::]/", "unspecified"),
    ("http://100.64.0.1/", "shared address space"),
    ("http://224.0.0.1/", "multicast"),
    ("http://[ff02::1]/", "multicast"),
    ("http://240.0.0.1/", "reserved"),
    ("http://[fec0::1]/", "site-local"),
    ("https://[2002:7f00:1::]/", "6to4"),  # 6to4 of 127.0.0.1
    ("ftp://93.184.216.34/", "only http"),
    ("file:///etc/passwd", "only http"),
    ("http://exa mple.example/", "not a URL"),
]


@pytest.mark.parametrize(("url", "reason"), REFUSED)
def test_a_non_public_or_non_http_address_is_refused_at_registration(url: str, reason: str) -> None:
    # Given the default policy (nothing allowed), when the URL is checked for registration
    refusal = PUBLIC_ONLY.registration_refusal(url)

    # Then it is refused, saying why
    assert refusal is not None and reason in refusal


@pytest.mark.parametrize(
    "url",
    [
        "http://93.184.216.34/",  # only parsed, never contacted
        "https://93.184.216.34:8443/v1/upper",
        "http://[2606:2800:220:1:248:1893:25c8:1946]/",
        "https://upper.example.com/v1",  # a name: checked when it is called
        "https://internal.corp.example/",
        "http://localhost-service.example/",  # not a *.localhost name
    ],
)
def test_a_public_address_or_a_name_passes_registration(url: str) -> None:
    assert PUBLIC_ONLY.registration_refusal(url) is None


def test_a_refused_registration_is_a_422_naming_the_field() -> None:
    with pytest.raises(InvalidDefinition) as refusal:
        PUBLIC_ONLY.check_registration("http://169.254.169.254/", "spec.notify.url")

    assert refusal.value.status_code == 422
    [detail] = refusal.value.details
    assert detail["path"] == "spec.notify.url"
    assert "169.254.169.254" in detail["message"]
    assert "ALLOWED_SERVICE_HOSTS" in detail["message"]


# --- the allow-list ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("allowed", "url", "refused"),
    [
        # by IP address
        ("10.0.0.5", "http://10.0.0.5/", False),
        ("10.0.0.5", "http://10.0.0.6/", True),
        ("[::1]", "http://[::1]/", False),
        # by CIDR
        ("10.0.0.0/8", "http://10.200.3.4/", False),
        ("10.0.0.0/8", "http://192.168.0.1/", True),
        ("127.0.0.0/8", "http://[::ffff:127.0.0.1]/", False),  # the same destination
        ("fd00::/8", "http://[fd12::1]/", False),
        # by host name
        ("localhost", "http://localhost:5001/", False),
        ("localhost", "http://127.0.0.1/", True),
        # the local runtime's default
        (LOOPBACK_HOSTS, "http://127.0.0.1:5001/", False),
        (LOOPBACK_HOSTS, "http://[::1]:5001/", False),
        (LOOPBACK_HOSTS, "http://localhost:5001/", False),
        (LOOPBACK_HOSTS, "http://10.0.0.1/", True),
        (LOOPBACK_HOSTS, "http://169.254.169.254/", True),
        # the metadata endpoint: only when listed as itself, never through a range
        ("169.254.0.0/16", "http://169.254.169.254/", True),
        ("0.0.0.0/0, ::/0", "http://169.254.169.254/", True),
        ("0.0.0.0/0, ::/0", "http://[fd00:ec2::254]/", True),
        ("0.0.0.0/0, ::/0", "http://10.0.0.1/", False),
        ("169.254.169.254", "http://169.254.169.254/", False),
    ],
)
def test_the_allow_list_permits_hosts_addresses_and_ranges(
    allowed: str, url: str, refused: bool
) -> None:
    policy = AddressPolicy.parse(allowed)

    assert (policy.registration_refusal(url) is not None) is refused


def test_the_allow_list_is_parsed_into_names_and_networks() -> None:
    policy = AddressPolicy.parse(" Svc.Internal. , *.corp.example,10.0.0.0/8,[fd00::1],, ")

    assert policy.names == {"svc.internal", "*.corp.example"}
    assert [str(n) for n in policy.networks] == ["10.0.0.0/8", "fd00::1/128"]
    assert AddressPolicy.parse("") == PUBLIC_ONLY


@pytest.mark.parametrize("entry", ["http://10.0.0.1/", "10.0.0.0/33", "two words", "a/b"])
def test_an_allow_list_entry_that_is_no_host_address_or_cidr_is_an_error(entry: str) -> None:
    with pytest.raises(ValueError, match="ALLOWED_SERVICE_HOSTS"):
        AddressPolicy.parse(f"localhost,{entry}")


# --- call time: after resolution ---------------------------------------------------------

NAMES = {
    "public.example": ["93.184.216.34"],
    "metadata.example": ["169.254.169.254"],
    "mixed.example": ["93.184.216.34", "10.0.0.7"],
    "v6.example": ["2606:2800:220:1:248:1893:25c8:1946", "::1"],
    "svc.internal": ["10.0.0.5"],
    "a.corp.example": ["10.1.0.1"],
    "corp.example": ["10.1.0.2"],
    "alias.internal": ["169.254.169.254"],
}


def test_a_name_that_resolves_to_public_addresses_may_be_called() -> None:
    resolver = FakeResolver(NAMES)
    policy = AddressPolicy.parse("", resolver=resolver)

    policy.check_call("https://public.example/v1")

    assert resolver.asked == [("public.example", 443)]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://metadata.example/", "metadata.example (169.254.169.254)"),
        ("http://mixed.example:8080/", "mixed.example (10.0.0.7)"),  # any address refuses
        ("http://v6.example/", "v6.example (::1)"),
    ],
)
def test_a_name_that_resolves_to_a_refused_address_is_refused_when_called(
    url: str, shown: str
) -> None:
    policy = AddressPolicy.parse("", resolver=FakeResolver(NAMES))

    with pytest.raises(AddressRefused) as refusal:
        policy.check_call(url)

    assert shown in str(refusal.value)
    assert (refusal.value.kind, refusal.value.retryable) == ("AddressRefused", False)


def test_a_name_that_does_not_resolve_is_a_retryable_dns_error() -> None:
    policy = AddressPolicy.parse("", resolver=FakeResolver(NAMES))

    with pytest.raises(UnresolvedHost) as failure:
        policy.check_call("http://nowhere.invalid/")

    assert (failure.value.kind, failure.value.retryable) == ("DnsError", True)
    assert "nowhere.invalid" in str(failure.value)


def test_a_name_that_resolves_to_nothing_is_a_dns_error() -> None:
    policy = AddressPolicy.parse("", resolver=lambda host, port: [])

    with pytest.raises(UnresolvedHost):
        policy.check_call("http://empty.example/")


def test_a_literal_address_is_checked_without_resolving() -> None:
    resolver = FakeResolver({})
    policy = AddressPolicy.parse("", resolver=resolver)

    policy.check_call("http://93.184.216.34/")
    with pytest.raises(AddressRefused):
        policy.check_call("http://2130706433/")

    assert resolver.asked == []


@pytest.mark.parametrize(
    ("allowed", "url", "refused"),
    [
        ("svc.internal", "http://svc.internal/", False),  # a name allows what it resolves to
        ("10.0.0.5", "http://svc.internal/", False),
        ("10.0.0.0/8", "http://svc.internal/", False),
        ("10.0.0.6", "http://svc.internal/", True),
        ("*.corp.example", "http://a.corp.example/", False),
        ("*.corp.example", "http://corp.example/", True),
        ("10.0.0.0/8", "http://mixed.example/", False),
        ("alias.internal", "http://alias.internal/", True),  # but never to the metadata
        ("169.254.169.254", "http://alias.internal/", False),
    ],
)
def test_the_allow_list_applies_at_call_time(allowed: str, url: str, refused: bool) -> None:
    policy = AddressPolicy.parse(allowed, resolver=FakeResolver(NAMES))

    try:
        policy.check_call(url)
    except AddressRefused:
        assert refused
    else:
        assert not refused


# --- the invoker -------------------------------------------------------------------------


@pytest.fixture
def unreachable() -> Iterator[tuple[requests.Session, Unreachable]]:
    """A session whose every request would be recorded by `Unreachable`, never sent."""
    spy = Unreachable()
    with requests.Session() as session:
        session.mount("http://", spy)
        session.mount("https://", spy)
        yield session, spy


def test_the_invoker_refuses_a_call_before_sending_anything(
    unreachable: tuple[requests.Session, Unreachable],
) -> None:
    # Given an invoker whose guard resolves metadata.example to 169.254.169.254
    session, spy = unreachable
    invoker = ServiceInvoker(
        session, address_policy=AddressPolicy.parse("", resolver=FakeResolver(NAMES))
    )

    # When a service there is called
    outcome = invoker.call(
        service("http://metadata.example/latest/meta-data/"),
        {},
        event_id="evt-1",
        step=0,
        timeout=1,
    )

    # Then the step's outcome is a non-retryable AddressRefused and nothing was sent
    assert outcome.error is not None
    assert (outcome.error.type, outcome.error.retryable) == ("AddressRefused", False)
    assert "169.254.169.254" in outcome.error.message
    assert outcome.status_code is None
    assert spy.sent == []


def test_the_invoker_turns_a_name_that_does_not_resolve_into_a_retryable_dns_error(
    unreachable: tuple[requests.Session, Unreachable],
) -> None:
    session, spy = unreachable
    invoker = ServiceInvoker(
        session, address_policy=AddressPolicy.parse("", resolver=FakeResolver(NAMES))
    )

    outcome = invoker.call(
        service("http://nowhere.invalid/"), {}, event_id="evt-1", step=0, timeout=1
    )

    assert outcome.error is not None
    assert (outcome.error.type, outcome.error.retryable) == ("DnsError", True)
    assert spy.sent == []


def test_what_the_guard_lets_through_is_sent(
    unreachable: tuple[requests.Session, Unreachable],
) -> None:
    # The control of the two tests above: a public destination reaches the transport
    session, spy = unreachable
    invoker = ServiceInvoker(
        session, address_policy=AddressPolicy.parse("", resolver=FakeResolver(NAMES))
    )

    outcome = invoker.call(
        service("http://public.example/upper"), {}, event_id="evt-1", step=0, timeout=1
    )

    assert spy.sent == ["http://public.example/upper"]
    assert outcome.error is not None and outcome.error.type == "ConnectionError"


def test_a_notification_to_a_refused_address_is_not_delivered(
    unreachable: tuple[requests.Session, Unreachable],
) -> None:
    session, spy = unreachable
    invoker = ServiceInvoker(
        session, address_policy=AddressPolicy.parse("", resolver=FakeResolver(NAMES))
    )

    status, problem = invoker.deliver("http://mixed.example/hook", b"{}", {})

    assert status is None
    assert problem is not None and problem.startswith("AddressRefused: ")
    assert spy.sent == []


def test_by_default_the_invoker_refuses_loopback(loopback: Loopback) -> None:
    # Given a service on loopback and an invoker built without a policy
    loopback.routes["/upper"] = lambda: (200, {}, b"{}")
    with requests.Session() as session:
        invoker = ServiceInvoker(session)

        # When it is called, and a notification is delivered there
        outcome = invoker.call(
            service(loopback.url + "/upper"), {}, event_id="evt-1", step=0, timeout=1
        )
        status, problem = invoker.deliver(loopback.url + "/upper", b"{}", {})

    # Then both are refused and the service never saw a request
    assert outcome.error is not None and outcome.error.type == "AddressRefused"
    assert status is None and problem is not None and "loopback" in problem
    assert loopback.received == []


def test_a_redirect_is_a_failure_and_is_not_followed(loopback: Loopback) -> None:
    # Given a loopback service that redirects to the metadata endpoint, and a session on
    # which a request to the metadata endpoint would be recorded instead of sent
    loopback.routes["/upper"] = lambda: (302, {"Location": "http://169.254.169.254/"}, b"")
    spy = Unreachable()
    with requests.Session() as session:
        session.mount("http://169.254.169.254", spy)
        invoker = ServiceInvoker(session, address_policy=AddressPolicy.parse(LOOPBACK_HOSTS))

        # When the service is called and a notification is delivered to it
        outcome = invoker.call(
            service(loopback.url + "/upper"), {}, event_id="evt-1", step=0, timeout=1
        )
        delivered = invoker.deliver(loopback.url + "/upper", b"{}", {})

    # Then the 302 is a non-retryable HttpError and the redirect was not followed
    assert outcome.error is not None
    assert (outcome.error.type, outcome.error.status_code, outcome.error.retryable) == (
        "HttpError",
        302,
        False,
    )
    assert delivered == (302, "the receiver answered 302")
    assert [call.path for call in loopback.received] == ["/upper", "/upper"]
    assert spy.sent == []


# --- wiring ------------------------------------------------------------------------------


def test_the_deployed_dependencies_read_the_allow_list_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TABLE_NAME", "machinery-test")
    monkeypatch.setenv("ALLOWED_SERVICE_HOSTS", "10.0.0.0/8,svc.internal")

    deps = Dependencies.from_environment()

    assert deps.address_policy == AddressPolicy.parse("10.0.0.0/8,svc.internal")
    assert deps.invoker.address_policy is deps.address_policy


def test_by_default_the_deployed_dependencies_allow_nothing_private(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TABLE_NAME", "machinery-test")
    monkeypatch.delenv("ALLOWED_SERVICE_HOSTS", raising=False)

    deps = Dependencies.from_environment()

    assert deps.address_policy == PUBLIC_ONLY
    assert deps.invoker.address_policy == PUBLIC_ONLY
    assert deps.address_policy.registration_refusal("http://127.0.0.1:5001/") is not None
