"""CheckoutFlow against a real `promoflow serve` on loopback: each step's outcome, the outbox's files, the contact
cache, and what reaches the database."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from promoflow.client import (
    AsyncCheckoutFlow,
    AsyncEngageClient,
    Basket,
    BasketLine,
    CheckoutFlow,
    ContactCache,
    EngageClient,
    IntentKind,
    IntentState,
    Outbox,
    RetryPolicy,
    StepStatus,
    SyncAgent,
)
from promoflow.wire.engage import PaymentMethod
from promoflow.wire.xml import Record, Redemption, read_contacts, read_redemptions, read_transactions
from tests.support.faultproxy import Fault, FaultProxy, FaultSpec, ProxyRequest

from ._live import LiveEngage, live_engage

FAST = RetryPolicy.interactive(base_delay=0.01, max_delay=0.05, max_retry_after=0.05)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveEngage]:
    engage = live_engage(tmp_path_factory.mktemp("checkout"), "--no-ftp")
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


def basket() -> Basket:
    return Basket(
        (
            BasketLine("SKU-1", Decimal(2), Decimal("150.00"), article_name="Shirt", tax_percent=Decimal(25)),
            BasketLine("SKU-2", Decimal(1), Decimal("100.00"), article_name="Socks"),
        ),
        "SEK",
    )


_OPEN: list[EngageClient] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def flow_for(
    live: LiveEngage, outbox: Outbox, cache: ContactCache | None, url: str | None = None
) -> CheckoutFlow:
    client = live.client(url, retry=FAST, timeout=2.0)
    _OPEN.append(client)
    return CheckoutFlow(client, outbox, store_external_id="S-1", contacts=cache, retry=FAST)


def test_an_online_checkout_redeems_each_used_promotion_once_and_stores_the_receipt(
    live: LiveEngage, outbox: Outbox, cache: ContactCache
) -> None:
    percent, money = live.promotion(value="10"), live.promotion(value_type="MONEY", value="50")
    customer = live.customers([percent, money], 1)[0]
    flow = flow_for(live, outbox, cache)
    sale = flow.start()

    identified = sale.identify(email=customer.email)
    assert identified.status is StepStatus.OK and identified.contact_id == customer.contact_id
    fetched = sale.fetch_promotions()
    assert fetched.status is StepStatus.OK
    assert {p.id for p in fetched.promotions} == set(customer.assignments)
    priced = sale.apply(basket())
    assert priced.total_gross == Decimal("400.00")
    assert priced.total_paid == Decimal("310.00")  # 10 % of 400, then 50 off
    updated = sale.update_contact({"firstName": "Alva"})
    assert updated.status is StepStatus.APPLIED
    done = sale.complete([PaymentMethod(type="card", value=priced.total_paid)], receipt_number="1001")

    assert [r.status for r in done.redemptions] == [StepStatus.APPLIED, StepStatus.APPLIED]
    assert done.receipt.status is StepStatus.APPLIED and done.online and not done.problems
    assert live.redemption_counts(customer.assignments) == dict.fromkeys(customer.assignments, 1)
    assert live.receipt_counts([done.unique_receipt_id]) == {done.unique_receipt_id: 1}
    with live.http() as http:
        contact = http.get(f"/api/v2/contacts/{customer.contact_id}").json()
    assert contact["attributes"]["firstName"] == "Alva"

    # The outbox kept every change as an A13 file, now done: 1 contact update, 2 redemptions, 1 receipt.
    status = outbox.status()
    assert status.counts[IntentState.DONE] == 4 and status.undelivered == 0 and not status.attention
    kinds = sorted(i.kind.value for i in outbox.intents(IntentState.DONE))
    assert kinds == ["contactUpdate", "receipt", "redemption", "redemption"]
    receipt_intent = outbox.intents(IntentState.DONE, kind=IntentKind.RECEIPT)[0]
    (record,) = [
        r.value for r in read_transactions(outbox.read_bytes(receipt_intent)) if isinstance(r, Record)
    ]
    assert record.total_gross_price == Decimal("310.00")
    assert {u.coupon_id for u in record.used_promotions or []} == set(customer.assignments)
    line_discounts = [d.value for item in record.items for d in item.discounts or []]
    assert sum(line_discounts) == Decimal("-90.00")


def test_identify_answers_from_the_cache_after_the_first_look_up(
    live: LiveEngage, outbox: Outbox, cache: ContactCache
) -> None:
    customer = live.customers([], 1)[0]
    with FaultProxy(live.base_url) as proxy:
        flow = flow_for(live, outbox, cache, proxy.url)
        first = flow.start().identify(email=customer.email.upper())
        second = flow.start().identify(email=customer.email)
        lookups = [e for e in proxy.log if e.request.path.startswith("/api/v2/contacts/id")]
    assert first.status is StepStatus.OK and second.status is StepStatus.CACHED
    assert second.contact_id == customer.contact_id
    assert len(lookups) == 1
    assert cache.get("email", customer.email) == customer.contact_id


def test_an_unknown_customer_is_not_found_and_the_sale_goes_on_without_promotions(
    live: LiveEngage, outbox: Outbox, cache: ContactCache
) -> None:
    sale = flow_for(live, outbox, cache).start()
    assert sale.identify(email=f"nobody-{uuid.uuid4().hex[:8]}@example.com").status is StepStatus.NOT_FOUND
    assert sale.fetch_promotions().status is StepStatus.SKIPPED
    sale.apply(basket())
    done = sale.complete()
    assert done.redemptions == ()
    # Identified by a key without a contact: the receipt is sent for that key (kept pending a contact).
    assert done.receipt.status is StepStatus.APPLIED
    assert done.receipt.detail["receiptStatus"] == "PendingContactMatch"


def test_server_down_for_the_whole_checkout_completes_the_sale_locally(
    live: LiveEngage, outbox: Outbox, cache: ContactCache, closed_port_url: str
) -> None:
    flow = flow_for(live, outbox, cache, closed_port_url)
    sale = flow.start()
    email = f"new-{uuid.uuid4().hex[:8]}@example.com"
    assert sale.identify(email=email).status is StepStatus.OFFLINE
    assert sale.fetch_promotions().status is StepStatus.SKIPPED
    created = sale.create_contact({"email": email, "firstName": "Nora"})
    assert created.status is StepStatus.QUEUED
    sale.apply(basket())
    done = sale.complete()
    assert done.receipt.status is StepStatus.QUEUED and done.queued == (done.receipt,)

    # The outbox holds the sale as A13 files, queued for the file path.
    queued = outbox.intents(IntentState.QUEUED)
    assert [i.kind for i in queued] == [IntentKind.CONTACT_CREATE, IntentKind.RECEIPT]
    contacts = [r.value for r in read_contacts(outbox.path(queued[0])) if isinstance(r, Record)]
    assert contacts[0].attributes == {"email": email, "firstName": "Nora"}
    receipts = [r.value for r in read_transactions(outbox.path(queued[1])) if isinstance(r, Record)]
    assert receipts[0].contact.match_key == email and receipts[0].contact.match_key_type == "email"
    assert cache.pending_create("email", email) == queued[0].id


def test_a_customer_identified_with_any_while_offline_keeps_the_receipt(
    live: LiveEngage, outbox: Outbox, cache: ContactCache, closed_port_url: str
) -> None:
    """`identify(any=…)` offline: the receipt is queued under that key (the server reads `any` by Engage's rule),
    not skipped for want of a customer."""
    sale = flow_for(live, outbox, cache, closed_port_url).start()
    assert sale.identify(any="nils@example.com").status is StepStatus.OFFLINE
    sale.apply(basket())
    done = sale.complete()
    assert done.receipt.status is StepStatus.QUEUED
    (queued,) = outbox.intents(IntentState.QUEUED, kind=IntentKind.RECEIPT)
    (record,) = [r.value for r in read_transactions(outbox.path(queued)) if isinstance(r, Record)]
    assert (record.contact.match_key, record.contact.match_key_type) == ("nils@example.com", "any")


def test_server_down_at_payment_queues_the_redemptions_and_the_receipt(
    live: LiveEngage, outbox: Outbox, cache: ContactCache
) -> None:
    pid = live.promotion()
    customer = live.customers([pid], 1)[0]
    with FaultProxy(live.base_url) as proxy:
        sale = flow_for(live, outbox, cache, proxy.url).start()
        sale.identify(email=customer.email)
        sale.fetch_promotions()
        sale.apply(basket())
        proxy.choose = lambda _request: FaultSpec(Fault.DROP_BEFORE)  # the network goes at payment time
        done = sale.complete()
    assert [r.status for r in done.results] == [StepStatus.QUEUED, StepStatus.QUEUED]
    (redemption_intent,) = outbox.intents(IntentState.QUEUED, kind=IntentKind.REDEMPTION)
    (record,) = [r.value for r in read_redemptions(outbox.path(redemption_intent)) if isinstance(r, Record)]
    assert record.coupon_id == customer.assignments[0] and record.contact_id == customer.contact_id
    assert record.idempotency_key == redemption_intent.idempotency_key
    assert record.unique_receipt_id == done.unique_receipt_id
    assert live.redemption_counts(customer.assignments) == {}


def test_a_contact_created_offline_gets_its_guid_at_the_next_identification(
    live: LiveEngage, outbox: Outbox, cache: ContactCache, closed_port_url: str
) -> None:
    email = f"later-{uuid.uuid4().hex[:8]}@example.com"
    offline = flow_for(live, outbox, cache, closed_port_url).start()
    assert offline.create_contact({"email": email, "firstName": "Ivar"}).status is StepStatus.QUEUED
    # The server answers again: the sync agent delivers the create (no FTP here: online).
    with live.client(retry=FAST) as client:
        report = SyncAgent(outbox, client, retry=FAST).run_once()
    assert report.done == 1 and report.undelivered == 0

    online = flow_for(live, outbox, ContactCache(cache.path)).start()
    found = online.identify(email=email)
    assert found.status in (StepStatus.OK, StepStatus.CACHED) and found.contact_id is not None
    assert cache.get("email", email) == found.contact_id and cache.pending_create("email", email) is None
    assert flow_for(live, outbox, cache).start().identify(email=email).status is StepStatus.CACHED


def test_a_contact_created_offline_and_imported_is_looked_up_and_saved(
    live: LiveEngage, outbox: Outbox, cache: ContactCache
) -> None:
    # Created by a file import (no GUID ever returned to the POS): the next identify looks it up.
    email = f"file-{uuid.uuid4().hex[:8]}@example.com"
    cache.created_offline("email", email, "some-intent")
    with live.http() as http:
        made = http.post("/api/v2/contacts", json={"email": email}).json()
    found = flow_for(live, outbox, cache).start().identify(email=email)
    assert found.status is StepStatus.OK and found.contact_id == made["id"]
    assert cache.get("email", email) == made["id"] and cache.pending_create("email", email) is None


def test_a_promotion_redeemed_elsewhere_is_reported_as_a_conflict(
    live: LiveEngage, outbox: Outbox, cache: ContactCache
) -> None:
    pid = live.promotion()
    customer = live.customers([pid], 1)[0]
    sale = flow_for(live, outbox, cache).start()
    sale.identify(email=customer.email)
    sale.fetch_promotions()
    sale.apply(basket())
    with live.http() as http:  # the web shop redeems it while the till is busy
        r = http.post(
            f"/api/v2/promotions/codes/{customer.assignments[0]}/redeem", json={"redemptionChannel": "ECOM"}
        )
        assert r.status_code == 200
    done = sale.complete()
    (redeemed,) = done.redemptions
    assert redeemed.status is StepStatus.CONFLICT and redeemed.verdict == "conflictAlreadyRedeemed"
    assert done.problems == (redeemed,)
    assert live.redemption_counts(customer.assignments) == {customer.assignments[0]: 1}
    attention = outbox.status().attention
    assert [i.id for i in attention] == [redeemed.intent_id]
    assert attention[0].state is IntentState.SETTLED and "already redeemed" in (attention[0].reason or "")
    # One timestamp format in every reason (seconds and offset), whether the conflict came online or by file.
    assert re.search(
        r"redeemed at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d via ECOM", redeemed.message or ""
    )


def test_a_response_lost_after_the_redeem_was_applied_is_settled_by_the_replay(
    live: LiveEngage, outbox: Outbox, cache: ContactCache
) -> None:
    pid = live.promotion()
    customer = live.customers([pid], 1)[0]
    dropped: list[ProxyRequest] = []

    def lose_first_redeem_answer(request: ProxyRequest) -> FaultSpec:
        if request.path.endswith("/redeem") and not dropped:
            dropped.append(request)
            return FaultSpec(Fault.DROP_AFTER)
        return FaultSpec()

    with FaultProxy(live.base_url, lose_first_redeem_answer) as proxy:
        sale = flow_for(live, outbox, cache, proxy.url).start()
        sale.identify(email=customer.email)
        sale.fetch_promotions()
        sale.apply(basket())
        done = sale.complete()
        lost = proxy.wait_for(lambda e: e.spec.fault is Fault.DROP_AFTER)
    assert lost.upstream_status == 200  # the server had applied it
    (redeemed,) = done.redemptions
    assert redeemed.status is StepStatus.DUPLICATE and redeemed.detail["settledBy"] == "replay"
    assert live.redemption_counts(customer.assignments) == {customer.assignments[0]: 1}


def _assign_and_receipt(live: LiveEngage) -> tuple[str, str, str, datetime]:
    pid = live.promotion()
    customer = live.customers([pid], 1)[0]
    now = datetime.now(UTC)
    created = now.replace(microsecond=now.microsecond // 1000 * 1000)
    receipt_id = f"R-{uuid.uuid4().hex[:10]}"
    body = {
        "contact": {"matchKey": customer.contact_id, "matchKeyType": "contactId"},
        "uniqueReceiptId": receipt_id,
        "createdDate": created.isoformat(timespec="milliseconds"),
        "storeExternalId": "S-1",
        "currency": "SEK",
        "totalGrossPrice": 90,
        "paymentMethods": [{"type": "card", "value": 90}],
        "items": [{"type": "PURCHASE", "sku": "A", "quantity": 1, "grossPaidPrice": 90}],
        "usedPromotions": [{"couponId": customer.assignments[0]}],
    }
    with live.http() as http:
        answer = http.post("/api/v2/receipts", json=body)
        assert answer.status_code == 200, answer.text
    return customer.contact_id, customer.assignments[0], receipt_id, created


@pytest.mark.parametrize("same_sale", [True, False], ids=["by-our-receipt", "by-someone-else"])
def test_a_pending_redemption_found_redeemed_is_ours_only_when_it_was_our_sale(
    live: LiveEngage, outbox: Outbox, cache: ContactCache, same_sale: bool
) -> None:
    # The receipt reached the server and redeemed the promotion itself; the redemption intent of the same
    # sale (say, its answer was lost and its idempotency record expired) must then settle as ours.
    contact_id, coupon, receipt_id, sale_at = _assign_and_receipt(live)
    redeemed_on = sale_at if same_sale else sale_at - timedelta(minutes=1)
    intent = outbox.add_redemption(
        Redemption(
            coupon_id=coupon,
            contact_id=contact_id,
            redemption_channel="POS",
            redeemed_on=redeemed_on,
            store_external_id="S-1",
            unique_receipt_id=receipt_id if same_sale else "R-other",
        ),  # fmt: skip
        group="sale-1",
    )
    outbox.commit("sale-1", [intent])
    outbox.release(intent)  # as if the till had crashed here

    (result,) = flow_for(live, outbox, cache).recover()
    assert result.status is (StepStatus.DUPLICATE if same_sale else StepStatus.CONFLICT)
    assert live.redemption_counts([coupon]) == {coupon: 1}


def test_recover_settles_committed_intents_and_discards_an_uncommitted_sale(
    live: LiveEngage, outbox: Outbox, cache: ContactCache
) -> None:
    pid = live.promotion()
    paid, unpaid = live.customers([pid], 2)
    now = datetime.now(UTC)

    def redemption(customer_assignment: str, contact_id: str) -> Redemption:
        return Redemption(coupon_id=customer_assignment, contact_id=contact_id, redemption_channel="POS",
                          redeemed_on=now, store_external_id="S-1")  # fmt: skip

    committed = outbox.add_redemption(redemption(paid.assignments[0], paid.contact_id), group="paid-sale")
    outbox.commit("paid-sale", [committed])
    uncommitted = outbox.add_redemption(
        redemption(unpaid.assignments[0], unpaid.contact_id), group="unpaid-sale"
    )
    outbox.close()  # the process died: every claim is gone

    with Outbox(outbox.directory) as restarted:
        results = flow_for(live, restarted, cache).recover()
        assert [(r.intent_id, r.status) for r in results] == [(committed.id, StepStatus.APPLIED)]
        assert restarted.get(uncommitted.id) is None
        assert restarted.status().counts[IntentState.DONE] == 1
    assert live.redemption_counts(paid.assignments + unpaid.assignments) == {paid.assignments[0]: 1}


def test_the_async_flow_does_the_same_checkout(live: LiveEngage, outbox: Outbox, cache: ContactCache) -> None:
    pid = live.promotion(value="25")
    customer = live.customers([pid], 1)[0]

    async def checkout() -> tuple[StepStatus, ...]:
        async with AsyncEngageClient(live.base_url, live.api_key, retry=FAST) as client:
            flow = AsyncCheckoutFlow(client, outbox, store_external_id="S-1", contacts=cache, retry=FAST)
            sale = flow.start()
            identified = await sale.identify(email=customer.email)
            fetched = await sale.fetch_promotions()
            sale.apply(basket())
            done = await sale.complete()
            return (identified.status, fetched.status, *(r.status for r in done.results))

    statuses = asyncio.run(checkout())
    assert statuses == (StepStatus.OK, StepStatus.OK, StepStatus.APPLIED, StepStatus.APPLIED)
    assert live.redemption_counts(customer.assignments) == {customer.assignments[0]: 1}


def test_a_cached_guid_the_server_no_longer_knows_is_forgotten(
    live: LiveEngage, outbox: Outbox, cache: ContactCache
) -> None:
    cache.save("email", "ghost@example.com", str(uuid.uuid4()))
    sale = flow_for(live, outbox, cache).start()
    assert sale.identify(email="ghost@example.com").status is StepStatus.CACHED
    assert sale.fetch_promotions().status is StepStatus.NOT_FOUND
    assert cache.get("email", "ghost@example.com") is None


def test_checkout_requests_carry_idempotency_keys_from_the_outbox(
    live: LiveEngage, outbox: Outbox, cache: ContactCache
) -> None:
    pid = live.promotion()
    customer = live.customers([pid], 1)[0]
    with FaultProxy(live.base_url) as proxy:
        sale = flow_for(live, outbox, cache, proxy.url).start()
        sale.identify(email=customer.email)
        sale.fetch_promotions()
        sale.apply(basket())
        done = sale.complete()
        posts = {e.request.path.rsplit("/", 1)[-1]: e.request.headers.get("idempotency-key") for e in proxy.log
                 if e.request.method == "POST"}  # fmt: skip
    by_id = {i.id: i for i in outbox.intents(IntentState.DONE)}
    assert posts["redeem"] == by_id[done.redemptions[0].intent_id or ""].idempotency_key
    assert posts["receipts"] == by_id[done.receipt.intent_id or ""].idempotency_key


def test_an_http_error_status_without_body_does_not_lose_the_sale(
    live: LiveEngage, outbox: Outbox, cache: ContactCache
) -> None:
    # A proxy answering 404 for every change (wrong route, not the server's "not found"): queued, not refused.
    pid = live.promotion()
    customer = live.customers([pid], 1)[0]
    with FaultProxy(live.base_url) as proxy:
        sale = flow_for(live, outbox, cache, proxy.url).start()
        sale.identify(email=customer.email)
        sale.fetch_promotions()
        sale.apply(basket())
        proxy.choose = lambda r: FaultSpec(Fault.STATUS, 404) if r.method == "POST" else FaultSpec()
        done = sale.complete()
    assert {r.status for r in done.results} == {StepStatus.QUEUED}
    assert live.redemption_counts(customer.assignments) == {}
