"""The outbox on its own: files, states, claims, groups, recovery, and crash safety of every transition.

The crash tests fork a child that does one outbox operation and dies (``os._exit``, no clean-up of any kind) just
before its n-th rename or fsync, for every n, then check from the parent what a restarted outbox finds: every
intent complete, in exactly one state folder, never half a sale.
"""

from __future__ import annotations

import itertools
import json
import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from promoflow.client import Intent, IntentKind, IntentState, Outbox, _durable
from promoflow.client.outbox import InvalidTransition
from promoflow.wire.engage import PaymentMethod, Receipt, ReceiptContact, ReceiptItem
from promoflow.wire.xml import ContactRecord, Redemption, parse_file_name

CRASHED, FINISHED, FAILED = 70, 71, 72


def redemption(**changes: Any) -> Redemption:
    values: dict[str, Any] = {
        "coupon_id": str(uuid.uuid4()),
        "contact_id": str(uuid.uuid4()),
        "redemption_channel": "POS",
        "redeemed_on": datetime(2026, 3, 10, 12, 0, 1, 500000, tzinfo=UTC),
        "store_external_id": "S-1",
        "unique_receipt_id": "R-1",
    }
    return Redemption(**(values | changes))


def receipt(receipt_id: str = "R-1") -> Receipt:
    return Receipt(
        contact=ReceiptContact(match_key="a@example.com", match_key_type="email"),
        unique_receipt_id=receipt_id,
        created_date=datetime(2026, 3, 10, 12, 0, 1, tzinfo=UTC),
        store_external_id="S-1",
        currency="SEK",
        total_gross_price=Decimal("90.00"),
        payment_methods=[PaymentMethod(type="card", value=Decimal("90.00"))],
        items=[ReceiptItem(sku="A", quantity=Decimal(1), gross_paid_price=Decimal("90.00"))],
    )


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    return tmp_path / "outbox"


@pytest.fixture
def box(directory: Path) -> Iterator[Outbox]:
    with Outbox(directory, sender="till-7") as outbox:
        yield outbox


def files(directory: Path) -> dict[str, list[str]]:
    return {
        folder.name: sorted(os.listdir(folder)) for folder in sorted(directory.iterdir()) if folder.is_dir()
    }


# ------------------------------------------------------------------------------------------------- basics


def test_an_intent_is_an_xml_file_with_its_sidecar_in_pending(box: Outbox, directory: Path) -> None:
    intent = box.add_redemption(redemption(), group="sale-1")
    assert intent.state is IntentState.PENDING and intent.kind is IntentKind.REDEMPTION
    assert files(directory)["pending"] == sorted([intent.file_name, f"{intent.id}.json"])
    name = parse_file_name(intent.file_name)
    assert name.kind.value == "redemptions" and name.sender is not None and name.sender.startswith("till-7-")
    record = box.load(intent)
    assert isinstance(record, Redemption) and record.idempotency_key == intent.idempotency_key
    sidecar = json.loads((directory / "pending" / f"{intent.id}.json").read_text())
    assert sidecar["state"] == "pending" and sidecar["group"] == "sale-1"
    assert sidecar["idempotencyKey"] == intent.idempotency_key
    assert intent.remote_folder == "/integration/promotionRedemptionImport"


def test_kinds_map_to_the_a13_folders(box: Outbox) -> None:
    created = box.add_contact(
        ContactRecord(attributes={"email": "n@example.com"}), key=("email", "n@example.com")
    )
    updated = box.add_contact(ContactRecord(contact_id=str(uuid.uuid4()), attributes={"firstName": "N"}))
    sent = box.add_receipt(receipt())
    assert (created.kind, updated.kind, sent.kind) == (
        IntentKind.CONTACT_CREATE,
        IntentKind.CONTACT_UPDATE,
        IntentKind.RECEIPT,
    )
    assert created.remote_folder == updated.remote_folder == "/integration/contactImport"
    assert sent.remote_folder == "/integration/transactionImport"
    assert created.contact_key == ("email", "n@example.com")


def test_intents_list_in_creation_order(box: Outbox) -> None:
    made = [box.add_redemption(redemption()) for _ in range(5)] + [box.add_receipt(receipt())]
    assert [i.id for i in box.intents()] == [i.id for i in made]


def test_a_transition_moves_the_file_and_its_sidecar(box: Outbox, directory: Path) -> None:
    intent = box.add_redemption(redemption())
    done = box.mark_done(intent, "duplicate", settledBy="replay")
    assert done.state is IntentState.DONE and done.verdict == "duplicate"
    assert files(directory)["pending"] == [] and files(directory)["done"] == sorted(
        [intent.file_name, f"{intent.id}.json"]
    )
    assert box.get(intent.id) == done
    assert box.get(intent.id) is not None and box.get(intent.id).detail == {"settledBy": "replay"}  # type: ignore[union-attr]


def test_transitions_follow_the_state_machine(box: Outbox) -> None:
    intent = box.mark_queued(box.add_redemption(redemption()), "offline")
    assert intent.attempts == 1 and intent.reason == "offline"
    intent = box.mark_uploaded(intent, intent.file_name)
    assert intent.detail["remoteName"] == intent.file_name
    done = box.mark_done(intent)
    with pytest.raises(InvalidTransition):
        box.mark_queued(done)
    dead = box.mark_dead(box.add_receipt(receipt("R-2")), "not well-formed")
    assert (
        box.transition(dead, IntentState.QUEUED).state is IntentState.QUEUED
    )  # a dead letter may be re-queued


def test_only_the_holder_may_move_an_intent(box: Outbox, directory: Path) -> None:
    intent = box.add_redemption(redemption())
    with Outbox(directory) as other:  # another process, as far as the locks go
        assert other.claim(intent) is None
        with pytest.raises(InvalidTransition):
            other.mark_done(intent)
        box.release(intent)
        claimed = other.claim(intent)
        assert claimed is not None and box.claim(intent) is None
        other.mark_done(claimed)
    assert box.get(intent.id) is not None and box.get(intent.id).state is IntentState.DONE  # type: ignore[union-attr]


def test_a_claim_fails_once_the_intent_has_moved_on(box: Outbox, directory: Path) -> None:
    listed = box.add_redemption(redemption())
    box.mark_queued(listed)
    box.release(listed)
    assert box.claim(listed) is None  # listed as pending, but it is queued now
    assert box.claim(box.intents(IntentState.QUEUED)[0]) is not None


def test_status_counts_states_and_lists_what_needs_attention(box: Outbox) -> None:
    box.mark_done(box.add_redemption(redemption()))
    conflict = box.mark_settled(
        box.add_redemption(redemption()), "conflictAlreadyRedeemed", "already redeemed"
    )
    box.mark_dead(box.add_receipt(receipt()), "rejected: not well-formed")
    box.mark_queued(box.add_redemption(redemption()))
    status = box.status()
    assert status.counts[IntentState.DONE] == 1 and status.counts[IntentState.QUEUED] == 1
    assert status.undelivered == 1
    assert [i.verdict for i in status.attention] == ["conflictAlreadyRedeemed", "rejected"]
    box.acknowledge(conflict)
    assert [i.verdict for i in box.status().attention] == ["rejected"]
    assert box.status().to_json()["counts"]["settled"] == 1


def test_an_intent_without_its_sidecar_is_rebuilt_from_the_xml(box: Outbox, directory: Path) -> None:
    intent = box.add_redemption(redemption())
    box.release(intent)
    (directory / "pending" / f"{intent.id}.json").unlink()
    (rebuilt,) = box.intents()
    assert rebuilt.id == intent.id and rebuilt.kind is IntentKind.REDEMPTION
    assert rebuilt.idempotency_key == intent.idempotency_key  # it is inside the redemption file


def test_a_sale_s_intent_without_its_sidecar_still_knows_its_sale_and_key(
    box: Outbox, directory: Path
) -> None:
    paid = box.add_redemption(redemption(), group="paid-sale")
    box.commit("paid-sale", [paid])
    unpaid = box.add_receipt(receipt(), group="unpaid-sale")
    alone = box.add_receipt(receipt("R-2"))
    box.close()
    for intent in (paid, unpaid, alone):
        (directory / "pending" / f"{intent.id}.json").unlink()
    with Outbox(directory) as restarted:
        report = restarted.recover()
        assert report.discarded == (unpaid.id,)
        assert set(report.pending) == {paid.id, alone.id}
        kept = {i.id: i for i in restarted.intents()}
        assert kept[paid.id].group == "paid-sale" and kept[paid.id].idempotency_key == paid.idempotency_key
        assert kept[alone.id].group is None and kept[alone.id].idempotency_key == alone.idempotency_key


def test_contact_changes_know_their_contact_and_which_wait_behind_which(box: Outbox, directory: Path) -> None:
    guid = str(uuid.uuid4())
    create = box.add_contact(
        ContactRecord(attributes={"email": "Ada@example.com"}), key=("email", "Ada@example.com")
    )
    by_key = box.add_contact(
        ContactRecord(match_key="ada@example.com", match_key_type="email", attributes={"city": "X"})
    )
    by_guid = box.add_contact(
        ContactRecord(contact_id=guid, attributes={"city": "Y"}), key=("EMAIL", "ada@example.com")
    )
    other = box.add_contact(ContactRecord(contact_id=str(uuid.uuid4()), attributes={"city": "Z"}))
    unrelated = box.add_redemption(redemption())
    for intent in (create, by_key, by_guid, other, unrelated):
        box.release(intent)
    assert by_key.kind is IntentKind.CONTACT_UPDATE and by_key.contact_key == ("email", "ada@example.com")
    assert by_guid.contact_marks == {f"id:{guid}", "key:email:ada@example.com"}
    assert [i.id for i in box.contact_changes_ahead(by_guid)] == [create.id, by_key.id]
    assert box.contact_changes_ahead(create) == [] and box.contact_changes_ahead(other) == []
    assert box.contact_changes_ahead(unrelated) == []
    with box.claimed(create) as held:  # a delivered change no longer holds the later ones back
        assert held is not None
        box.mark_done(held)
    assert [i.id for i in box.contact_changes_ahead(by_guid)] == [by_key.id]

    # A lost sidecar: the XML file alone still says how the update names its contact.
    (directory / "pending" / f"{by_key.id}.json").unlink()
    rebuilt = box.get(by_key.id)
    assert rebuilt is not None and rebuilt.kind is IntentKind.CONTACT_UPDATE
    assert (
        rebuilt.contact_key == ("email", "ada@example.com") and rebuilt.contact_marks == by_key.contact_marks
    )


def test_purge_removes_old_done_intents(box: Outbox) -> None:
    done = box.mark_done(box.add_redemption(redemption()))
    box.release(done)
    assert box.purge(timedelta(days=1)) == 0
    assert box.purge(timedelta(seconds=-1)) == 1
    assert box.intents() == []


def test_an_invalid_group_or_sender_is_refused(directory: Path) -> None:
    with pytest.raises(ValueError):
        Outbox(directory, sender="till/../1")
    with Outbox(directory) as box, pytest.raises(ValueError):
        box.add_redemption(redemption(), group="../escape")


# ------------------------------------------------------------------------------------------------ recovery


def test_recovery_discards_an_uncommitted_sale_and_keeps_a_committed_one(
    box: Outbox, directory: Path
) -> None:
    committed = [box.add_redemption(redemption(), group="paid"), box.add_receipt(receipt(), group="paid")]
    box.commit("paid", committed)
    uncommitted = [
        box.add_redemption(redemption(), group="unpaid"),
        box.add_receipt(receipt("R-9"), group="unpaid"),
    ]
    with Outbox(directory) as restarted:
        # The writer is alive (holds its intents): nothing of its unfinished sale is touched.
        report = restarted.recover()
        assert report.discarded == () and set(report.pending) == {i.id for i in committed}
        assert len(restarted.intents(IntentState.PENDING)) == 4
        box.close()  # the writer dies
        report = restarted.recover()
        assert set(report.discarded) == {i.id for i in uncommitted}
        assert set(report.pending) == {i.id for i in committed}
        assert {i.id for i in restarted.intents()} == {i.id for i in committed}


def test_a_finished_sale_drops_its_marker(box: Outbox, directory: Path) -> None:
    intent = box.add_redemption(redemption(), group="g1")
    box.commit("g1", [intent])
    box.forget_group("g1")
    assert box.is_committed("g1")  # still pending: the marker must stay
    box.mark_done(intent)
    box.forget_group("g1")
    assert not box.is_committed("g1")


def test_recovery_removes_stale_temporary_files_and_orphaned_sidecars(box: Outbox, directory: Path) -> None:
    intent = box.add_redemption(redemption())
    (directory / "pending" / ".x.xml.tmp").write_bytes(b"<partial")
    (directory / "done" / f"{intent.id}.json").write_text("{}")  # left by a move that crashed
    young = box.recover()
    assert young.removed_files == 0  # could belong to a writer that is still busy
    old = box.recover(stale_after=timedelta(seconds=-1))
    assert old.removed_files == 2
    assert files(directory)["pending"] == sorted([intent.file_name, f"{intent.id}.json"])
    assert files(directory)["done"] == []


def test_recovery_keeps_a_batch_with_its_manifest_and_drops_a_lone_half(box: Outbox) -> None:
    (box.batches / "b1_redemptions.xml").write_bytes(b"<promotionRedemptions/>")
    (box.batches / "b1_redemptions.xml.json").write_text("{}")
    (box.batches / "b2_redemptions.xml").write_bytes(b"<promotionRedemptions/>")  # its manifest never made it
    assert box.recover(stale_after=timedelta(seconds=-1)).removed_files == 1
    assert sorted(os.listdir(box.batches)) == ["b1_redemptions.xml", "b1_redemptions.xml.json"]


# -------------------------------------------------------------------------------------------- crash safety


def _die_before_syscall(n: int, action: Callable[[], None]) -> int:
    """Fork a child that runs ``action`` and dies just before its n-th rename or fsync."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's result is its exit code
        code = FAILED
        try:
            counter = itertools.count(1)

            def dying(real: Callable[..., Any]) -> Callable[..., Any]:
                def call(*args: Any) -> Any:
                    if next(counter) == n:
                        os._exit(CRASHED)
                    return real(*args)

                return call

            _durable._replace = dying(os.replace)
            _durable._fsync = dying(os.fsync)
            action()
            code = FINISHED
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _every_crash_point(action: Callable[[], None], check: Callable[[int], None]) -> int:
    """Run ``action`` crashing at each point in turn, then once to the end; ``check(n)`` after each."""
    for n in itertools.count(1):
        code = _die_before_syscall(n, action)
        assert code in (CRASHED, FINISHED), code
        check(n)
        if code == FINISHED:
            return n - 1
    raise AssertionError("unreachable")


def _consistent(directory: Path) -> list[Intent]:
    """What a restarted outbox finds, after checking that every intent is whole and in one place."""
    with Outbox(directory) as box:
        box.recover(stale_after=timedelta(seconds=-1))
        intents = box.intents()
        where: dict[str, list[str]] = {}
        for state in IntentState:
            for name in os.listdir(box.folder(state)):
                assert not _durable.is_tmp(name), name
                stem = name.rsplit(".", 1)[0]
                where.setdefault(stem, []).append(f"{state.value}/{name.rsplit('.', 1)[1]}")
        for intent in intents:
            assert sorted(where[intent.id]) == [f"{intent.state.value}/json", f"{intent.state.value}/xml"]
            box.load(intent)  # a whole, valid file
        assert set(where) == {i.id for i in intents}, where  # no orphan left behind
        return intents


def test_a_crash_while_writing_an_intent_leaves_it_whole_or_absent(directory: Path) -> None:
    def write() -> None:
        with Outbox(directory) as box:
            box.add_redemption(redemption(unique_receipt_id="R-crash"))

    outcomes: list[int] = []

    def check(n: int) -> None:
        intents = [i for i in _consistent(directory) if i.state is IntentState.PENDING]
        assert len(intents) <= 1
        outcomes.append(len(intents))
        for intent in intents:
            with Outbox(directory) as box:
                held = box.claim(intent)
                assert held is not None
                box.mark_done(held)  # out of the way of the next round

    points = _every_crash_point(write, check)
    assert points >= 4 and outcomes[0] == 0 and outcomes[-1] == 1


def test_a_crash_during_a_transition_leaves_the_intent_in_exactly_one_state(directory: Path) -> None:
    seen: set[IntentState] = set()

    def setup() -> Intent:
        with Outbox(directory) as box:
            intent = box.add_redemption(redemption())
            box.release(intent)
            return intent

    current = [setup()]

    def move() -> None:
        with Outbox(directory) as box:
            held = box.claim(current[0])
            assert held is not None
            box.mark_done(held, "applied", settledBy="response")

    def check(n: int) -> None:
        intents = [i for i in _consistent(directory) if i.id == current[0].id]
        assert len(intents) == 1
        (intent,) = intents
        assert intent.state in (IntentState.PENDING, IntentState.DONE)
        if intent.state is IntentState.DONE:
            assert intent.verdict == "applied" and intent.detail["settledBy"] == "response"
        seen.add(intent.state)
        current[0] = setup()

    points = _every_crash_point(move, check)
    assert points >= 4 and seen == {IntentState.PENDING, IntentState.DONE}


def test_a_crash_while_writing_a_sale_leaves_all_of_it_or_none(directory: Path) -> None:
    sizes: list[int] = []

    def sale() -> None:
        with Outbox(directory) as box:
            group = f"sale-{uuid.uuid4().hex[:8]}"
            written = [
                box.add_redemption(redemption(), group=group),
                box.add_redemption(redemption(), group=group),
                box.add_receipt(receipt(), group=group),
            ]
            box.commit(group, written)

    def check(n: int) -> None:
        pending = [i for i in _consistent(directory) if i.state is IntentState.PENDING]
        assert len(pending) in (0, 3), [i.id for i in pending]
        assert len({i.group for i in pending}) <= 1
        sizes.append(len(pending))
        with Outbox(directory) as box:
            for intent in pending:
                held = box.claim(intent)
                assert held is not None
                box.mark_done(held)

    points = _every_crash_point(sale, check)
    assert points >= 12 and sizes[0] == 0 and sizes[-1] == 3
