"""The example services: each a tiny JSON-over-HTTP service.

    python examples/services/serve.py upper=5001 reverse=5002 space-counter=5003 reverse-later=5004

and the order workflow's, on 5005-5013 (see examples/definitions/service-*.json).

A service receives its inputs as a JSON object and answers its outputs as one. The
Idempotency-Key header (`{event_id}:{step}`) lets a real service recognise a retry.

`reverse-later` and `charge-card` are callback services: each answers 202 at once and
POSTs its outputs to the X-Machinery-Callback-Url it was given a moment later.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SERVICES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "upper": lambda data: {"message": data["message"].upper()},
    "reverse": lambda data: {"message": data["message"][::-1]},
    "space-counter": lambda data: {"space_count": data["message"].count(" ")},
    "reverse-later": lambda data: {"message": data["message"][::-1]},
    # the order workflow's
    "classify": lambda data: {"segment": "large" if data["amount"] > 100 else "small"},
    "fraud-check": lambda data: {"risk": "review" if data["amount"] > 1000 else "low"},
    "vat-fr": lambda data: {"vat": round(data["amount"] * 0.2, 2)},
    "vat-default": lambda data: {"vat": 0.0},
    "reserve-stock": lambda data: {"reservation": f"res-{len(data['lines'])}-lines"},
    "charge-card": lambda data: {"charge_id": f"ch-{data['amount'] + data['vat']:.2f}"},
    "receipt": lambda data: {"receipt": f"paid, charge {data['charge_id']}"},
    "enrich": lambda data: _priced(data["line"]),
    "notify-customer": lambda data: {
        "message": f"order {data['order_id']}: {len(data['enriched'])} lines, {data['receipt']}"
    },
}
CALLBACK_DELAY_SECONDS = {"reverse-later": 0.2, "charge-card": 0.2}
PRICES = {"tea": 4.5, "cup": 3.0, "pot": 18.0}


def _priced(line: dict[str, Any]) -> dict[str, Any]:
    price = PRICES.get(line["sku"], 1.0)
    return {"sku": line["sku"], "price": price, "total": round(price * line["qty"], 2)}


def call_back(url: str, outputs: dict[str, Any], delay: float) -> None:
    time.sleep(delay)  # the work takes a while
    request = urllib.request.Request(
        url, data=json.dumps(outputs).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        answer.read()


def handler_for(name: str) -> type[BaseHTTPRequestHandler]:
    transform = SERVICES[name]
    delay = CALLBACK_DELAY_SECONDS.get(name)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: Machinery reuses its connections

        def setup(self) -> None:
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_POST(self) -> None:
            try:
                data = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                status, answer = 200, transform(data)
                if delay is not None:
                    url = self.headers["X-Machinery-Callback-Url"]
                    threading.Thread(target=call_back, args=(url, answer, delay)).start()
                    status, answer = 202, {}
            except (ValueError, KeyError, TypeError, AttributeError) as error:
                status, answer = 400, {"error": f"bad input: {error}"}
            body = json.dumps(answer).encode()
            head = (
                f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            )
            # One write for head and body: two small writes wait on Nagle and delayed ACKs.
            self.wfile.write(head.encode() + body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def serve(assignments: list[str]) -> list[ThreadingHTTPServer]:
    servers = []
    for assignment in assignments:
        name, _, port = assignment.partition("=")
        server = ThreadingHTTPServer(("127.0.0.1", int(port)), handler_for(name))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        print(f"{name} listening on http://127.0.0.1:{server.server_address[1]}/", flush=True)
    return servers


if __name__ == "__main__":
    serve(sys.argv[1:] or [f"{name}={5001 + n}" for n, name in enumerate(SERVICES)])
    threading.Event().wait()
