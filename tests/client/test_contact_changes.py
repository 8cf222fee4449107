"""Contact changes from the till: nothing lost, nothing out of order.

A change of a contact that has earlier changes still on their way waits behind them in the outbox, and the sync
agent delivers them in the order the till made them (online, or as files the server imports in upload order).
A change for a customer whose GUID the till never learnt is kept and delivered by the contact's key. A create
means create-or-update by key, online as by file. Against a real `promoflow serve` on loopback."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from promoflow.client import (
    Basket,
    BasketLine,
    CheckoutFlow,
    ContactCache,
    EngageClient,
    IntentKind,
    IntentState,
    Outbox,
    RedemptionResult,
    RetryPolicy,
    StepStatus,
    SyncAgent,
)
from promoflow.wire.xml import Record, read_contacts
from tests.support.faultproxy import Fault, FaultProxy, FaultSpec

from ._live import LiveEngage, live_engage

FAST = RetryPolicy.interactive(base_delay=0.01, max_delay=0.05, max_retry_after=0.05)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveEngage]:
    engage = live_engage(tmp_path_factory.mktemp("contact-changes"), "--no-ftp")
    try:
        yield engage
    finally:
        engage.stop()


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    with Outbox(tmp_path / "outbox") as box:
        yield box


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[ContactCache]:
    with ContactCache(tmp_path / "contacts.sqlite3") as contacts:
        yield contacts


@pytest.fixture
def clients() -> Iterator[list[EngageClient]]:
    made: list[EngageClient] = []
    yield made
    for client in made:
        client.close()


def _flow(live: LiveEngage, outbox: Outbox, cache: ContactCache, clients: list[EngageClient],
          url: str | None = None) -> CheckoutFlow:  # fmt: skip
    client = live.client(url, retry=FAST, timeout=2.0)
    clients.append(client)
    return CheckoutFlow(client, outbox, store_external_id="S-1", contacts=cache, retry=FAST)


def _attributes(live: LiveEngage, contact_id: str) -> dict[str, Any]:
    with live.http() as http:
        answer = http.get(f"/api/v2/contacts/{contact_id}")
        assert answer.status_code == 200, answer.text
        return dict(answer.json()["attributes"])


def _basket() -> Basket:
    return Basket((BasketLine("SKU-1", Decimal(1), Decimal("100.00")),), "SEK")


def test_a_newer_change_waits_behind_a_queued_one_and_both_apply_in_order(
    live: LiveEngage, outbox: Outbox, cache: ContactCache, clients: list[EngageClient]
) -> None:
    customer = live.customers([], 1)[0]
    with FaultProxy(live.base_url) as proxy:
        flow = _flow(live, outbox, cache, clients, proxy.url)
        # Sale 1: the update gets no answer (never reached the server) and is queued.
        first = flow.start()
        first.identify(email=customer.email)
        proxy.choose = lambda r: FaultSpec(Fault.DROP_BEFORE) if r.method == "POST" else FaultSpec()
        assert first.update_contact({"firstName": "Older", "city": "Lund"}).status is StepStatus.QUEUED
        # Sale 2: the API answers again; the newer change must not overtake the queued one.
        proxy.choose = lambda r: FaultSpec()
        second = flow.start()
        second.identify(email=customer.email)
        newer = second.update_contact({"firstName": "Newer"})
        assert newer.status is StepStatus.QUEUED and "behind 1 earlier change" in (newer.message or "")
        assert not [e for e in proxy.log if e.request.method == "POST" and e.spec.fault is Fault.PASS]

        report = SyncAgent(outbox, flow.client, retry=FAST, contacts=cache).run_once()
        posts = [
            e.request.body for e in proxy.log if e.request.method == "POST" and e.spec.fault is Fault.PASS
        ]
    assert report.settled_online == 2 and report.undelivered == 0
    assert [b"Older" in body for body in posts] == [True, False] and b"Newer" in posts[1]
    got = _attributes(live, customer.contact_id)
    assert (got["firstName"], got["city"]) == ("Newer", "Lund")


def test_a_change_for_a_customer_identified_offline_is_kept_and_delivered_by_key(
    live: LiveEngage, outbox: Outbox, cache: ContactCache, clients: list[EngageClient], closed_port_url: str
) -> None:
    customer = live.customers([], 1)[0]
    sale = _flow(live, outbox, cache, clients, closed_port_url).start()
    assert sale.identify(email=customer.email.upper()).status is StepStatus.OFFLINE
    changed = sale.update_contact({"mobilePhone": "+46709876543"})
    assert changed.status is StepStatus.QUEUED  # kept, never "skipped"
    (intent,) = outbox.intents(IntentState.QUEUED)
    assert intent.kind is IntentKind.CONTACT_UPDATE and intent.contact_id is None
    (record,) = [r.value for r in read_contacts(outbox.path(intent)) if isinstance(r, Record)]
    assert (record.match_key, record.match_key_type) == (customer.email.upper(), "email")

    with live.client(retry=FAST) as client:
        report = SyncAgent(outbox, client, retry=FAST, contacts=cache).run_once()
    assert report.done == 1 and report.undelivered == 0
    assert _attributes(live, customer.contact_id)["mobilePhone"] == "+46709876543"
    assert cache.get("email", customer.email) == customer.contact_id  # the GUID was learnt on the way


def test_a_change_by_a_key_no_contact_has_is_reported_not_dropped(
    live: LiveEngage, outbox: Outbox, cache: ContactCache, clients: list[EngageClient], closed_port_url: str
) -> None:
    sale = _flow(live, outbox, cache, clients, closed_port_url).start()
    sale.identify(email=f"nobody-{uuid.uuid4().hex[:8]}@example.com")
    assert sale.update_contact({"firstName": "Ghost"}).status is StepStatus.QUEUED
    with live.client(retry=FAST) as client:
        report = SyncAgent(outbox, client, retry=FAST).run_once()
    (attention,) = report.attention
    assert attention.verdict == "notFound" and "no contact has email" in (attention.reason or "")
    assert outbox.status().attention == (attention,)


def test_a_change_without_any_customer_is_a_mistake_not_a_skip(
    live: LiveEngage, outbox: Outbox, cache: ContactCache, clients: list[EngageClient]
) -> None:
    sale = _flow(live, outbox, cache, clients).start()
    with pytest.raises(ValueError, match="identify"):
        sale.update_contact({"firstName": "Who"})
    assert sale.update_contact({}).status is StepStatus.SKIPPED  # nothing to send
    assert outbox.status().counts[IntentState.PENDING] == 0 and not outbox.intents()


def test_a_change_for_a_contact_created_offline_follows_its_create(
    live: LiveEngage, outbox: Outbox, cache: ContactCache, clients: list[EngageClient], closed_port_url: str
) -> None:
    email = f"new-{uuid.uuid4().hex[:8]}@example.com"
    sale = _flow(live, outbox, cache, clients, closed_port_url).start()
    assert sale.identify(email=email).status is StepStatus.OFFLINE
    assert sale.create_contact({"email": email, "firstName": "Nora"}).status is StepStatus.QUEUED
    later = sale.update_contact({"firstName": "Nora B."})
    assert later.status is StepStatus.QUEUED
    with live.client(retry=FAST) as client:
        report = SyncAgent(outbox, client, retry=FAST, contacts=cache).run_once()
    assert report.done == 2 and report.undelivered == 0
    contact_id = cache.get("email", email)
    assert contact_id is not None and _attributes(live, contact_id)["firstName"] == "Nora B."


def test_a_create_whose_key_exists_updates_that_contact_online_as_by_file(
    live: LiveEngage, outbox: Outbox, cache: ContactCache, clients: list[EngageClient]
) -> None:
    customer = live.customers([], 1)[0]
    created = (
        _flow(live, outbox, cache, clients)
        .start()
        .create_contact({"email": customer.email, "firstName": "Typed", "city": "Malmö"})
    )
    assert created.status is StepStatus.APPLIED and created.detail["contactId"] == customer.contact_id
    got = _attributes(live, customer.contact_id)
    assert (got["firstName"], got["city"]) == ("Typed", "Malmö")


def test_a_redemption_result_says_which_assignment_and_promotion_it_was_for(
    live: LiveEngage, outbox: Outbox, cache: ContactCache, clients: list[EngageClient]
) -> None:
    pid = live.promotion(name="Ten off")
    customer = live.customers([pid], 1)[0]
    sale = _flow(live, outbox, cache, clients).start()
    sale.identify(email=customer.email)
    sale.fetch_promotions()
    sale.apply(_basket())
    (redeemed,) = sale.complete().redemptions
    assert isinstance(redeemed, RedemptionResult) and redeemed.status is StepStatus.APPLIED
    assert (redeemed.assignment_id, redeemed.promotion_id, redeemed.promotion_name) == (
        customer.assignments[0], pid, "Ten off",
    )  # fmt: skip
    assert outbox.get(redeemed.intent_id or "").detail["promotionName"] == "Ten off"  # type: ignore[union-attr]
