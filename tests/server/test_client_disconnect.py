"""A client that goes away in the middle of its request body (a till killed, its network lost) is no server error:
the request is recorded as 499 in the access log and the metrics, logged as information, and nothing is written.
A 500 there would feed the operators' 5xx alert with the tills' network trouble."""

from __future__ import annotations

import socket
import uuid
from typing import Any
from urllib.parse import urlsplit

import httpx

from tests.server.conftest import Live
from tests.server.test_metrics import parse, value, wait_for


def _cut_short(base_url: str, path: str, api_key: str, headers: str = "") -> None:
    """A POST that declares a 100-byte JSON body, sends 9 bytes of it and closes the connection."""
    url = urlsplit(base_url)
    with socket.create_connection((url.hostname or "127.0.0.1", url.port or 80), timeout=10) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {url.netloc}\r\napikey: {api_key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: 100\r\n{headers}\r\n".encode()
            + b'{"redemp'
        )


def _statuses(samples: Any, route: str) -> dict[str, float]:
    return {
        dict(labels)["status"]: n
        for (name, labels), n in samples.items()
        if name == "promoflow_http_requests_total" and dict(labels).get("route") == route
    }


def test_a_client_gone_mid_body_is_recorded_as_499_and_writes_nothing(
    live: Live, live_tenant: dict[str, Any]
) -> None:
    key = live_tenant["apiKey"]
    with live.client(live_tenant) as api:
        cid = api.post("/api/v2/contacts", json={"email": f"d-{uuid.uuid4().hex[:8]}@example.com"}).json()[
            "id"
        ]
        count = api.get("/api/v2/contacts/count").json()
    seen = len(live.server.output)
    cases = {
        # read by the redeem route itself (the quick path), by the routed redeem (an Idempotency-Key), and by the
        # front layer's JSON check (every other body)
        "/api/v3/promotion-assignments/{assignment_id}/redeem": (
            f"/api/v3/promotion-assignments/{uuid.uuid4()}/redeem",
            "",
        ),
        "/api/v2/promotions/codes/{promotion_id}/redeem": (
            f"/api/v2/promotions/codes/{uuid.uuid4()}/redeem",
            "Idempotency-Key: cut-1\r\n",
        ),
        "/api/v2/contacts/{contact_id}": (f"/api/v2/contacts/{cid}", ""),
        "/api/v2/contacts": ("/api/v2/contacts", ""),
    }
    before = {route: _statuses(parse(httpx.get(f"{live.base_url}/metrics").text), route) for route in cases}
    for path, headers in cases.values():
        _cut_short(live.base_url, path, key, headers)

    def all_logged() -> bool:
        lines = live.server.output[seen:]
        return all(any(f" {path} 499 " in line for line in lines) for path, _ in cases.values())

    wait_for(all_logged, what="an access-log line with 499 for every request cut short")
    after = parse(httpx.get(f"{live.base_url}/metrics").text)
    for route in cases:
        now = _statuses(after, route)
        assert now.get("499", 0) == before[route].get("499", 0) + 1, (route, now)
        assert {s: n for s, n in now.items() if s.startswith("5")} == {
            s: n for s, n in before[route].items() if s.startswith("5")
        }, route
    logged = "".join(live.server.output[seen:])
    assert "api.unhandled_error" not in logged and "Traceback" not in logged
    assert "api.client_disconnected" in logged
    with live.client(live_tenant) as api:
        assert api.get("/api/v2/contacts/count").json() == count
        assert (
            value(
                after, "promoflow_http_requests_total", method="POST", route="/api/v2/contacts", status="500"
            )
            == 0
        )
