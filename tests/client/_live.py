"""A real `promoflow serve` for the SDK's flow tests: its own SQLite database, a tenant, building blocks of the
Engage flow (promotions, contacts, assignments) through the API, and counts straight from the database."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from promoflow.client import EngageClient, RetryPolicy
from promoflow.server.config import Settings
from promoflow.server.migrate import upgrade
from promoflow.server.models import assignment, receipt, redemption
from tests.conftest import make_tenant
from tests.support.db import read_engine
from tests.support.servers import ServerProcess, start_server


@dataclass
class Customer:
    email: str
    contact_id: str
    assignments: list[str] = field(default_factory=list)


@dataclass
class LiveEngage:
    """A running server, its database and data dir, and one tenant on it."""

    db_url: str
    data_dir: Path
    extra_args: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    server: ServerProcess | None = None
    tenant: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------------------------------ process

    def start(self) -> LiveEngage:
        # No rate limit: the tests send bursts on purpose (429s come from the fault proxy instead).
        env = {"PROMOFLOW_DEFAULT_RATE_LIMIT_PER_SECOND": "0", **self.env}
        self.server = start_server(self.db_url, self.data_dir, *self.extra_args, env=env)
        if not self.tenant:
            self.tenant = make_tenant(Settings(database_url=self.db_url, data_dir=self.data_dir))
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return self.server.base_url

    @property
    def api_key(self) -> str:
        return str(self.tenant["apiKey"])

    @property
    def ftp_url(self) -> str:
        """The tenant's FTP URL with its credentials (``ftp[s]://user:password@host:port``)."""
        assert self.server is not None
        base = self.server.ftp_url
        assert base is not None, "the server runs no FTP service"
        scheme, rest = base.split("://", 1)
        return f"{scheme}://{self.tenant['ftpUser']}:{self.tenant['ftpPassword']}@{rest}"

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, headers={"apikey": self.api_key}, timeout=30)

    def client(self, base_url: str | None = None, **kw: Any) -> EngageClient:
        kw.setdefault("retry", RetryPolicy.interactive())
        return EngageClient(base_url or self.base_url, self.api_key, **kw)

    # ------------------------------------------------------------------------------------------ content

    def promotion(self, *, value_type: str = "PERCENT", value: str = "10", name: str | None = None) -> str:
        with self.http() as http:
            body = {
                "name": name or f"promo {uuid.uuid4().hex[:8]}",
                "validity": {"startDate": "2020-01-01", "endDate": "2099-12-31"},
                "redemptionChannels": [
                    {"type": "POS", "valueType": value_type, "value": value},
                    {"type": "ECOM", "valueType": value_type, "value": value},
                ],
            }
            created = http.post("/api/v2/promotions/multichannels", json=body)
            assert created.status_code == 201, created.text
            pid = str(created.json()["id"])
            activated = http.post(f"/api/v2/promotions/multichannels/{pid}/activate")
            assert activated.status_code == 200, activated.text
            return pid

    def customers(self, promotion_ids: Iterable[str], count: int) -> list[Customer]:
        """``count`` new contacts, each holding one assignment of every promotion in ``promotion_ids``."""
        promotion_ids = list(promotion_ids)
        made: list[Customer] = []
        with self.http() as http:
            for _ in range(count):
                email = f"c-{uuid.uuid4().hex[:12]}@example.com"
                created = http.post("/api/v2/contacts", json={"email": email, "firstName": "Test"})
                assert created.status_code == 201, created.text
                customer = Customer(email, str(created.json()["id"]))
                for pid in promotion_ids:
                    assigned = http.post(f"/api/v2/contacts/{customer.contact_id}/promotions/{pid}/assign")
                    assert assigned.status_code == 200, assigned.text
                    customer.assignments.append(str(assigned.json()["id"]))
                made.append(customer)
        return made

    # ----------------------------------------------------------------------------------------- database

    @contextmanager
    def db(self) -> Iterator[Any]:
        engine = read_engine(self.db_url)
        try:
            with engine.connect() as conn:
                yield conn
        finally:
            engine.dispose()

    def redemption_counts(self, assignment_ids: Iterable[str]) -> Counter[str]:
        """Redemption rows per assignment (only the given ones; missing means 0)."""
        ids = [uuid.UUID(a) for a in assignment_ids]
        counts: Counter[str] = Counter()
        with self.db() as conn:
            for chunk in range(0, len(ids), 500):
                rows = conn.execute(
                    select(redemption.c.assignment_id, func.count())
                    .where(redemption.c.assignment_id.in_(ids[chunk : chunk + 500]))
                    .group_by(redemption.c.assignment_id)
                )
                counts.update({str(aid): int(n) for aid, n in rows})
        return counts

    def redemption_rows(self, assignment_id: str) -> list[Any]:
        with self.db() as conn:
            return list(
                conn.execute(select(redemption).where(redemption.c.assignment_id == uuid.UUID(assignment_id)))
            )

    def redeemed_flags(self, assignment_ids: Iterable[str]) -> dict[str, bool]:
        ids = [uuid.UUID(a) for a in assignment_ids]
        with self.db() as conn:
            rows = conn.execute(
                select(assignment.c.id, assignment.c.redeemed_at).where(assignment.c.id.in_(ids))
            )
            return {str(aid): at is not None for aid, at in rows}

    def receipt_counts(self, unique_receipt_ids: Iterable[str]) -> Counter[str]:
        ids = list(unique_receipt_ids)
        counts: Counter[str] = Counter()
        tenant_id = uuid.UUID(str(self.tenant["tenantId"]))
        with self.db() as conn:
            for chunk in range(0, len(ids), 500):
                rows = conn.execute(
                    select(receipt.c.unique_receipt_id, func.count())
                    .where(
                        receipt.c.tenant_id == tenant_id,
                        receipt.c.unique_receipt_id.in_(ids[chunk : chunk + 500]),
                    )
                    .group_by(receipt.c.unique_receipt_id)
                )
                counts.update({str(rid): int(n) for rid, n in rows})
        return counts


def live_engage(tmp: Path, *extra_args: str, env: dict[str, str] | None = None) -> LiveEngage:
    """A fresh database and data dir under ``tmp``, migrated, with a server started on them (its FTP server
    on a free port unless ``--no-ftp``)."""
    tmp.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{tmp / 'promoflow.sqlite3'}"
    upgrade(url)
    data_dir = tmp / "data"
    data_dir.mkdir(exist_ok=True)
    return LiveEngage(url, data_dir, extra_args, dict(env or {})).start()
