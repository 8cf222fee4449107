"""A randomized run of checkouts through a fault-injecting proxy in front of a real `promoflow serve`.

Each request may be dropped before or after the server saw it, stalled past the client's timeout before or
after the server applied it, or answered 500/502/503/429 (with and without Retry-After) by the proxy, or
answered 502 after the server applied it. Every checkout must end, after the sync agent delivered what the
checkout queued, with each used promotion redeemed exactly once, no unused one redeemed, and its receipt
stored once: counted in the server's database. The RNG is seeded (PROMOFLOW_FAULT_SEED overrides it).
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from promoflow.client import (
    Basket,
    BasketLine,
    CheckoutFlow,
    ContactCache,
    EngageClient,
    IntentState,
    Outbox,
    RetryPolicy,
    StepStatus,
    SyncAgent,
)
from tests.support.faultproxy import Fault, FaultProxy, FaultSpec, ProxyRequest

from ._live import LiveEngage, live_engage

CHECKOUTS = int(os.environ.get("PROMOFLOW_FAULT_CHECKOUTS", "200"))
SEED = int(os.environ.get("PROMOFLOW_FAULT_SEED", "20260310"))
FAULT_RATE = float(os.environ.get("PROMOFLOW_FAULT_RATE", "0.3"))
TIMEOUT = 0.1  # seconds per phase: a stall costs this much

MENU: tuple[FaultSpec, ...] = (
    FaultSpec(Fault.DROP_BEFORE),
    FaultSpec(Fault.DROP_AFTER),
    FaultSpec(Fault.STALL_BEFORE),
    FaultSpec(Fault.STALL_AFTER),
    FaultSpec(Fault.STATUS, 500),
    FaultSpec(Fault.STATUS, 502),
    FaultSpec(Fault.STATUS, 503),
    FaultSpec(Fault.STATUS, 503, retry_after="1"),
    FaultSpec(Fault.STATUS, 429),
    FaultSpec(Fault.STATUS, 429, retry_after="1"),
    FaultSpec(Fault.STATUS_AFTER, 502),
)


class RandomFaults:
    """The proxy's chooser: a fault from MENU with probability FAULT_RATE, from a seeded RNG."""

    def __init__(self, seed: int, rate: float = FAULT_RATE) -> None:
        self.rng = random.Random(seed)
        self.rate = rate

    def __call__(self, request: ProxyRequest) -> FaultSpec:
        if self.rng.random() >= self.rate:
            return FaultSpec()
        return self.rng.choice(MENU)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveEngage]:
    engage = live_engage(tmp_path_factory.mktemp("faults"), "--no-ftp")
    try:
        yield engage
    finally:
        engage.stop()


def _basket(i: int) -> Basket:
    return Basket(
        (
            BasketLine(f"SKU-{i}", Decimal(1 + i % 3), Decimal("99.90")),
            BasketLine("BAG", Decimal(1), Decimal("5.00")),
        ),
        "SEK",
    )


def test_every_checkout_through_random_faults_redeems_once_and_stores_its_receipt_once(
    live: LiveEngage, tmp_path: Path
) -> None:
    percent, money = live.promotion(value="10"), live.promotion(value_type="MONEY", value="20")
    customers = live.customers([percent, money], CHECKOUTS)
    policy = RetryPolicy.interactive(
        max_attempts=4, base_delay=0.005, max_delay=0.02, max_retry_after=0.02, total_budget=2.0,
        rng=random.Random(SEED).random,
    )  # fmt: skip
    faults = RandomFaults(SEED)
    used: dict[str, list[str]] = {}
    statuses: Counter[str] = Counter()

    with (
        FaultProxy(live.base_url, faults) as proxy,
        Outbox(tmp_path / "outbox", sender="till1") as outbox,
        ContactCache(tmp_path / "contacts.sqlite3") as cache,
        EngageClient(proxy.url, live.api_key, retry=policy, timeout=TIMEOUT) as client,
    ):
        for customer in customers[::2]:  # half the customers are regulars: their GUID is cached
            cache.save("email", customer.email, customer.contact_id)
        flow = CheckoutFlow(client, outbox, store_external_id="S-1", contacts=cache, retry=policy)
        for i, customer in enumerate(customers):
            sale = flow.start()
            for _ in range(3):  # the cashier tries again when the screen says "offline"
                if sale.identify(email=customer.email).status in (StepStatus.OK, StepStatus.CACHED):
                    break
            for _ in range(3):
                if sale.contact_id is None or sale.fetch_promotions().status is StepStatus.OK:
                    break
            priced = sale.apply(_basket(i))
            done = sale.complete()
            used[done.unique_receipt_id] = [a.assignment_id for a in priced.applied]
            statuses.update(r.status.value for r in done.results)
            assert not done.problems, done.problems

        # Whatever the checkouts could not settle is delivered by the sync agent (online; no FTP here),
        # through the same faults; each pass stops at the first failure, so it takes several.
        agent = SyncAgent(outbox, client, retry=policy)
        for _ in range(100):
            if agent.run_once().finished:
                break
        final = outbox.status()
        log = list(proxy.log)

    assert final.undelivered == 0, [(i.id, i.reason, i.attempts) for i in outbox.intents(IntentState.QUEUED)]
    assert not final.attention, [i.to_json() for i in final.attention]
    assert final.counts[IntentState.DONE] == sum(len(a) + 1 for a in used.values())

    used_ids = [a for assignments in used.values() for a in assignments]
    all_ids = [a for c in customers for a in c.assignments]
    assert len(used_ids) == len(set(used_ids))
    assert used_ids, "no promotion was used at all"
    counts = live.redemption_counts(all_ids)
    assert {a: counts[a] for a in used_ids} == dict.fromkeys(used_ids, 1), f"seed {SEED}"
    assert sum(counts.values()) == len(used_ids), f"an unused promotion was redeemed (seed {SEED})"
    assert live.receipt_counts(used) == dict.fromkeys(used, 1), f"seed {SEED}"

    # The run really went through every kind of fault, including answers lost after the server applied
    # a redeem or stored a receipt, and some checkouts had to leave work to the sync agent.
    kinds = Counter(e.spec.label() for e in log)
    assert set(kinds) == {spec.label() for spec in (*MENU, FaultSpec())}, kinds
    applied_but_lost = [
        e for e in log
        if e.spec.fault in (Fault.DROP_AFTER, Fault.STALL_AFTER, Fault.STATUS_AFTER) and e.upstream_status == 200
    ]  # fmt: skip
    assert any(e.request.path.endswith("/redeem") for e in applied_but_lost)
    assert any(e.request.path.endswith("/receipts") for e in applied_but_lost)
    assert statuses[StepStatus.DUPLICATE.value] > 0 and statuses[StepStatus.QUEUED.value] > 0, statuses
