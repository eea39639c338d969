"""Where the local runtime makes Powertools' API resolver safe for concurrent requests.

Lambda gives each execution environment one request at a time; the local runtime serves
requests on threads, all through the one resolver of functions/api/app.py. Powertools keeps
the request being resolved on the resolver's class (`current_event`, `lambda_context`) and
its route and path parameters in the resolver's `context`, so concurrent requests read each
other's: an event POSTed to one workflow could be stored for another, a callback answered
with another route's status. Here each thread has its own.

`install` fails loudly if one of the Powertools internals it relies on has moved.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

_installed = False


def install() -> None:
    global _installed
    from aws_lambda_powertools.event_handler import api_gateway
    from aws_lambda_powertools.utilities.data_classes.common import BaseProxyEvent

    router, resolver = api_gateway.BaseRouter, api_gateway.ApiGatewayResolver
    for owner, attribute in (
        (resolver, "resolve"),
        (resolver, "_resolve"),
        (resolver, "_build_response"),
        (resolver, "_to_proxy_event"),
        (resolver, "clear_context"),
    ):
        if not hasattr(owner, attribute):
            raise RuntimeError(
                f"Powertools seam {owner.__name__}.{attribute} is gone; check its pinned version"
            )
    if _installed:
        return
    _installed = True
    threads = threading.local()

    def values() -> dict[tuple[str, int], Any]:
        """This thread's request state, by (attribute, resolver)."""
        if not hasattr(threads, "values"):
            threads.values = {}
        mine: dict[tuple[str, int], Any] = threads.values
        return mine

    def per_thread(name: str, initial: Callable[[], Any]) -> property:
        def get(self: Any) -> Any:
            mine = values()
            key = (name, id(self))
            if key not in mine:
                mine[key] = initial()
            return mine[key]

        def put(self: Any, value: Any) -> None:
            values()[(name, id(self))] = value

        return property(get, put)

    # Every resolver's reads and writes of these go through the properties (a Router defines
    # its own, which delegate to its resolver). Only the class-level assignments in
    # `resolve` would bypass them, so `resolve` sets them on the instance instead.
    router.current_event = per_thread("current_event", lambda: None)  # type: ignore[assignment]
    router.lambda_context = per_thread("lambda_context", lambda: None)  # type: ignore[assignment]
    resolver.context = per_thread("context", dict)  # type: ignore[assignment]

    def resolve(self: Any, event: Any, context: Any) -> dict[str, Any]:
        if isinstance(event, BaseProxyEvent):
            event = event.raw_event
        self.current_event = self._to_proxy_event(event)
        self.lambda_context = context
        try:
            response: dict[str, Any] = self._build_response(self._resolve())
            return response
        finally:
            self.clear_context()

    resolver.resolve = resolve  # type: ignore[method-assign]
