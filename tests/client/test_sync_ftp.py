"""The file path end to end: sales made while the server was down sit in the outbox as A13 files; when it is back,
`promoflow outbox sync` (the CLI, as a process) uploads them to the server's real FTP(S) server, its worker imports
them, and the result files settle each intent: applied, or reported (a conflict is never silently dropped)."""

from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from promoflow.client import (
    Basket,
    BasketLine,
    CheckoutFlow,
    ContactCache,
    Intent,
    IntentKind,
    IntentState,
    Outbox,
    RetryPolicy,
    StepStatus,
    SyncAgent,
)
from promoflow.client._ftp import FtpConnection, FtpTarget
from promoflow.wire.xml import (
    IMPORT_RESULTS_DIR,
    Record,
    Redemption,
    read_contacts,
    read_redemptions,
    read_transactions,
)
from tests.support.faultproxy import Fault, FaultProxy, FaultSpec

from ._live import Customer, LiveEngage, live_engage

FAST = RetryPolicy.interactive(base_delay=0.01, max_delay=0.05)


def _basket() -> Basket:
    return Basket((BasketLine("SKU-1", Decimal(2), Decimal("100.00")), BasketLine("BAG", 1, 5)), "SEK")


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "promoflow.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=180,
    )


def _queue_one_redemption(live: LiveEngage, outbox: Outbox, customer: Customer) -> Intent:
    """A paid sale whose redeem and receipt found the network gone: both queued for the file path."""
    with FaultProxy(live.base_url) as proxy, live.client(proxy.url, retry=FAST) as client:
        sale = CheckoutFlow(client, outbox, store_external_id="S-9", retry=FAST).start()
        sale.identify(email=customer.email)
        sale.fetch_promotions()
        sale.apply(_basket())
        proxy.choose = lambda _request: FaultSpec(Fault.DROP_BEFORE)
        done = sale.complete()
    assert {r.status for r in done.results} == {StepStatus.QUEUED}
    (intent,) = outbox.intents(IntentState.QUEUED, kind=IntentKind.REDEMPTION)
    return intent


@pytest.mark.slow
def test_a_sale_made_while_the_server_was_down_is_applied_by_outbox_sync_over_ftp(tmp_path: Path) -> None:
    live = live_engage(tmp_path / "server")
    try:
        percent, money = live.promotion(value="10"), live.promotion(value_type="MONEY", value="25")
        regular = live.customers([percent, money], 1)[0]
        outbox_dir = tmp_path / "till" / "outbox"
        with (
            live.client(retry=FAST, timeout=1.0) as client,
            Outbox(outbox_dir, sender="till1") as outbox,
            ContactCache(tmp_path / "till" / "contacts.sqlite3") as cache,
        ):
            flow = CheckoutFlow(client, outbox, store_external_id="S-1", contacts=cache, retry=FAST)
            sale = flow.start()  # the regular is identified while the server still answers...
            assert sale.identify(email=regular.email).status is StepStatus.OK
            assert len(sale.fetch_promotions().promotions) == 2
            sale.apply(_basket())
            live.stop()  # ...then the server goes away, for everything that follows
            first = sale.complete()
            assert [r.status for r in first.results] == [StepStatus.QUEUED] * 3

            newcomer = f"new-{uuid.uuid4().hex[:8]}@example.com"
            walk_in = flow.start()  # a new customer, with the server down for the whole checkout
            assert walk_in.identify(email=newcomer).status is StepStatus.OFFLINE
            assert (
                walk_in.create_contact({"email": newcomer, "firstName": "Edda"}).status is StepStatus.QUEUED
            )
            walk_in.apply(_basket())
            second = walk_in.complete()
            assert second.receipt.status is StepStatus.QUEUED and second.redemptions == ()

            # The sale completed locally: the outbox holds the A13 files, queued for the file path.
            queued = outbox.intents(IntentState.QUEUED)
            assert [i.kind for i in queued] == [
                IntentKind.REDEMPTION,
                IntentKind.REDEMPTION,
                IntentKind.RECEIPT,
                IntentKind.CONTACT_CREATE,
                IntentKind.RECEIPT,
            ]
            redeemed = [r.value.coupon_id for i in queued[:2] for r in read_redemptions(outbox.path(i))
                        if isinstance(r, Record)]  # fmt: skip
            assert sorted(redeemed) == sorted(regular.assignments)
            assert [r.value.attributes["email"] for r in read_contacts(outbox.path(queued[3]))
                    if isinstance(r, Record)] == [newcomer]  # fmt: skip
            receipts = [r.value for i in (queued[2], queued[4]) for r in read_transactions(outbox.path(i))
                        if isinstance(r, Record)]  # fmt: skip
            assert [r.unique_receipt_id for r in receipts] == [
                first.unique_receipt_id,
                second.unique_receipt_id,
            ]

        live.start()  # the server is back (new ports)...
        taken = regular.assignments[1]
        with live.http() as http:  # ...and meanwhile the web shop redeemed the 25 SEK promotion
            answer = http.post(f"/api/v2/promotions/codes/{taken}/redeem", json={"redemptionChannel": "ECOM"})
            assert answer.status_code == 200, answer.text

        env = {
            "PROMOFLOW_API_URL": live.base_url,
            "PROMOFLOW_API_KEY": live.api_key,
            "PROMOFLOW_FTP_URL": live.ftp_url,
            "PROMOFLOW_OUTBOX_DIR": str(outbox_dir),
        }
        synced = _cli("outbox", "sync", "--json", "--timeout", "60", env=env)
        assert synced.returncode == 3, synced.stdout + synced.stderr  # delivered, with a conflict to look at
        report = json.loads(synced.stdout)
        # Five intents in four files: the two redemptions, next to each other, went up as one batch.
        assert report["uploaded"] == 5 and report["resultsRead"] == 4 and report["done"] == 4
        assert report["undelivered"] == 0 and report["ftpOnline"] is True
        (conflict,) = report["attention"]
        assert conflict["kind"] == "redemption" and conflict["verdict"] == "conflictAlreadyRedeemed"
        assert "already redeemed" in conflict["reason"] and "ECOM" in conflict["reason"]
        # The same timestamp format as a conflict found online (seconds, offset), said once.
        assert re.fullmatch(
            r"already redeemed at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d via ECOM", conflict["reason"]
        )

        # In the database: each promotion redeemed once (ours by file, the other by the web shop only),
        # each receipt stored once, the new contact created.
        mine = regular.assignments[0]
        assert live.redemption_counts(regular.assignments) == {mine: 1, taken: 1}
        assert [row.via for row in live.redemption_rows(mine)] == ["file"]
        assert [row.channel for row in live.redemption_rows(taken)] == ["ECOM"]
        receipt_ids = [first.unique_receipt_id, second.unique_receipt_id]
        assert live.receipt_counts(receipt_ids) == dict.fromkeys(receipt_ids, 1)
        with live.client() as client:
            created = client.lookup_contact_id(email=newcomer)
        assert created is not None

        status = _cli("outbox", "status", "--json", env=env)
        assert status.returncode == 0, status.stderr
        listed = json.loads(status.stdout)
        assert listed["counts"] == {
            "pending": 0,
            "queued": 0,
            "uploaded": 0,
            "done": 4,
            "settled": 1,
            "dead": 0,
        }
        assert [i["id"] for i in listed["attention"]] == [conflict["id"]]
        text = _cli("outbox", "status", env=env)
        assert "conflictAlreadyRedeemed" in text.stdout and conflict["id"] in text.stdout

        # The next identification of the contact created by file finds its GUID and keeps it.
        with (
            live.client(retry=FAST) as client,
            Outbox(outbox_dir) as outbox,
            ContactCache(tmp_path / "till" / "contacts.sqlite3") as cache,
        ):
            found = (
                CheckoutFlow(client, outbox, store_external_id="S-1", contacts=cache)
                .start()
                .identify(email=newcomer)
            )
            assert found.status is StepStatus.OK and found.contact_id == created
            assert cache.get("email", newcomer) == created
    finally:
        live.stop()


@pytest.fixture(scope="module")
def no_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveEngage]:
    """A server that imports nothing until the test runs its worker (``promoflow worker --once``)."""
    engage = live_engage(tmp_path_factory.mktemp("noworker"), "--no-worker")
    try:
        yield engage
    finally:
        engage.stop()


def _run_worker(live: LiveEngage) -> None:
    done = _cli("worker", "--once", "--database-url", live.db_url, "--data-dir", str(live.data_dir), env={})
    assert done.returncode == 0, done.stdout + done.stderr


def _imports_named(live: LiveEngage, name: str) -> list[dict[str, Any]]:
    with live.http() as http:
        answer = http.get("/api/v2/imports", params={"count": 1000})
        assert answer.status_code == 200, answer.text
    return [item for item in answer.json()["items"] if item.get("fileName") == name]


def _upload_by_hand(live: LiveEngage, intent: Intent, data: bytes) -> None:
    target = FtpTarget.from_url(live.ftp_url)
    with FtpConnection(target) as ftp:
        ftp.upload(intent.remote_folder, intent.file_name, data)


def test_a_file_whose_result_is_already_on_the_server_is_not_uploaded_again(
    no_worker: LiveEngage, tmp_path: Path
) -> None:
    customer = no_worker.customers([no_worker.promotion()], 1)[0]
    with Outbox(tmp_path / "outbox") as outbox:
        intent = _queue_one_redemption(no_worker, outbox, customer)
        # The till uploaded the file and died before noting it; the server has imported it since.
        _upload_by_hand(no_worker, intent, outbox.read_bytes(intent))
        _run_worker(no_worker)
        with no_worker.client() as client:
            report = SyncAgent(outbox, client, no_worker.ftp_url).run_once()
        # The redemption is found imported (not sent again) and settled; the receipt went up and waits.
        assert report.uploaded == 2 and report.already_uploaded == 1
        assert report.done == 1 and report.awaiting_results == 1
        assert outbox.get(intent.id) is not None and outbox.get(intent.id).state is IntentState.DONE  # type: ignore[union-attr]
    assert len(_imports_named(no_worker, intent.file_name)) == 1  # never sent twice
    assert no_worker.redemption_counts(customer.assignments) == {customer.assignments[0]: 1}


def test_a_file_uploaded_but_not_yet_imported_may_go_again_and_is_applied_once(
    no_worker: LiveEngage, tmp_path: Path
) -> None:
    customer = no_worker.customers([no_worker.promotion()], 1)[0]
    with Outbox(tmp_path / "outbox") as outbox:
        intent = _queue_one_redemption(no_worker, outbox, customer)
        _upload_by_hand(
            no_worker, intent, outbox.read_bytes(intent)
        )  # accepted, waiting in the server's inbox
        with no_worker.client() as client:
            agent = SyncAgent(outbox, client, no_worker.ftp_url)
            first = agent.run_once()  # nothing visible says it is there: it goes again
            assert first.uploaded == 2 and first.awaiting_results == 2
            _run_worker(no_worker)
            report = agent.sync_until_settled(30)
        assert report.done == 2 and report.undelivered == 0 and not report.attention
        done = outbox.get(intent.id)
        assert done is not None and done.state is IntentState.DONE
    imports = _imports_named(no_worker, intent.file_name)
    assert len(imports) == 2 and {i["status"] for i in imports} >= {"duplicate"}
    assert no_worker.redemption_counts(customer.assignments) == {customer.assignments[0]: 1}


def test_a_file_the_server_rejects_becomes_a_dead_letter_with_the_reason(
    no_worker: LiveEngage, tmp_path: Path
) -> None:
    customer = no_worker.customers([no_worker.promotion()], 1)[0]
    reported: list[Intent] = []
    with Outbox(tmp_path / "outbox") as outbox:
        intent = _queue_one_redemption(no_worker, outbox, customer)
        path = outbox.path(intent)
        path.write_bytes(path.read_bytes()[:60])  # the disk lost the end of the file
        with no_worker.client() as client:
            agent = SyncAgent(outbox, client, no_worker.ftp_url, on_conflict=reported.append)
            assert agent.run_once().uploaded == 2
            _run_worker(no_worker)
            report = agent.sync_until_settled(30)
        (dead,) = report.attention
        assert dead.id == intent.id and dead.state is IntentState.DEAD and dead.verdict == "rejected"
        assert "not well-formed" in (dead.reason or "")
        assert [i.id for i in reported] == [intent.id]
        assert [i.id for i in outbox.status().attention] == [intent.id]
    # The sale's receipt (its usedPromotions) redeemed the promotion all the same: once, not by the file.
    (row,) = no_worker.redemption_rows(customer.assignments[0])
    assert row.via == "receipt"


def _contact_attributes(live: LiveEngage, contact_id: str) -> dict[str, Any]:
    with live.http() as http:
        answer = http.get(f"/api/v2/contacts/{contact_id}")
        assert answer.status_code == 200, answer.text
        return dict(answer.json()["attributes"])


def test_a_change_uploaded_but_not_imported_is_not_overtaken_by_a_newer_one(
    no_worker: LiveEngage, tmp_path: Path
) -> None:
    # Issue 11 §10: sale 1's update went by file; sale 2 (API back) must not apply a newer value online that
    # the import of sale 1's file would then overwrite.
    customer = no_worker.customers([], 1)[0]
    with (
        FaultProxy(no_worker.base_url) as proxy,
        no_worker.client(proxy.url, retry=FAST, timeout=1.0) as client,
        Outbox(tmp_path / "outbox") as outbox,
    ):
        flow = CheckoutFlow(client, outbox, store_external_id="S-1", retry=FAST)
        first = flow.start()
        first.identify(email=customer.email)
        proxy.choose = lambda r: FaultSpec(Fault.DROP_BEFORE) if r.method == "POST" else FaultSpec()
        assert first.update_contact({"firstName": "Older", "city": "Lund"}).status is StepStatus.QUEUED
        agent = SyncAgent(outbox, client, no_worker.ftp_url, retry=FAST)
        assert agent.run_once().uploaded == 1  # on the server, not imported yet (no worker)
        proxy.choose = lambda r: FaultSpec()

        second = flow.start()
        second.identify(email=customer.email)
        newer = second.update_contact({"firstName": "Newer"})
        assert newer.status is StepStatus.QUEUED and "behind 1 earlier change" in (newer.message or "")
        assert _contact_attributes(no_worker, customer.contact_id).get("firstName") == "Test"

        assert agent.run_once().uploaded == 1  # uploaded after the first file: imported after it
        _run_worker(no_worker)
        report = agent.sync_until_settled(30)
    assert report.done == 2 and report.undelivered == 0 and not report.attention
    got = _contact_attributes(no_worker, customer.contact_id)
    assert (got["firstName"], got["city"]) == ("Newer", "Lund")


def test_outbox_sync_learns_guids_from_import_results_into_the_contact_cache(
    no_worker: LiveEngage, tmp_path: Path, closed_port_url: str
) -> None:
    known = no_worker.customers([], 1)[0]
    newcomer = f"new-{uuid.uuid4().hex[:8]}@example.com"
    outbox_dir = tmp_path / "outbox"
    with (
        no_worker.client(closed_port_url, retry=FAST, timeout=1.0) as offline,
        Outbox(outbox_dir) as outbox,
        ContactCache(outbox_dir / "contacts.sqlite3") as cache,
    ):
        flow = CheckoutFlow(offline, outbox, store_external_id="S-1", contacts=cache, retry=FAST)
        regular = flow.start()  # a known customer, identified while the API is unreachable: no GUID
        assert regular.identify(email=known.email).status is StepStatus.OFFLINE
        assert regular.update_contact({"city": "Visby"}).status is StepStatus.QUEUED
        walk_in = flow.start()
        walk_in.identify(email=newcomer)
        assert walk_in.create_contact({"email": newcomer, "firstName": "Edda"}).status is StepStatus.QUEUED

    env = {"PROMOFLOW_FTP_URL": no_worker.ftp_url, "PROMOFLOW_OUTBOX_DIR": str(outbox_dir)}
    uploaded = _cli("outbox", "sync", "--no-wait", env=env)
    assert uploaded.returncode == 1, uploaded.stdout + uploaded.stderr  # waiting for the import
    assert uploaded.stdout.startswith("API not configured; FTP up: 2 uploaded"), uploaded.stdout
    _run_worker(no_worker)
    synced = _cli("outbox", "sync", "--timeout", "30", env=env)
    assert synced.returncode == 0, synced.stdout + synced.stderr
    assert "2 done, 0 need attention, 0 undelivered" in synced.stdout

    assert _contact_attributes(no_worker, known.contact_id)["city"] == "Visby"  # delivered by its key
    with no_worker.client() as client:
        created = client.lookup_contact_id(email=newcomer)
    with ContactCache(outbox_dir / "contacts.sqlite3") as cache:  # the CLI's default cache
        assert cache.get("email", known.email) == known.contact_id
        assert created is not None and cache.get("email", newcomer) == created
        assert cache.pending_create("email", newcomer) is None


def _certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_ftps_uploads_over_tls_when_the_url_says_so(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path)
    live = live_engage(
        tmp_path / "server", env={"PROMOFLOW_FTP_TLS_CERT": str(cert), "PROMOFLOW_FTP_TLS_KEY": str(key)}
    )
    try:
        customer = live.customers([live.promotion()], 1)[0]
        with Outbox(tmp_path / "outbox") as outbox:
            _queue_one_redemption(live, outbox, customer)
            plain = SyncAgent(outbox, None, live.ftp_url).run_once()
            assert plain.ftp_online is False and plain.uploaded == 0  # the server requires TLS
            secure_url = live.ftp_url.replace("ftp://", "ftps://", 1)
            tls = ssl.create_default_context(cafile=str(cert))
            report = SyncAgent(outbox, None, secure_url, tls_context=tls).sync_until_settled(60)
            assert report.ftp_online is True and report.uploaded == 2 and report.done == 2
            assert report.undelivered == 0
        assert live.redemption_counts(customer.assignments) == {customer.assignments[0]: 1}
    finally:
        live.stop()


# ---------------------------------------------------------------------------------- a plain FTP server


class PlainFtp:
    """A vanilla pyftpdlib server (uploads visible at once, rename allowed), counting completed uploads."""

    def __init__(self, root: Path) -> None:
        from pyftpdlib.authorizers import DummyAuthorizer
        from pyftpdlib.handlers import FTPHandler
        from pyftpdlib.servers import FTPServer

        self.received: list[str] = []
        outer = self

        class Handler(FTPHandler):
            def on_file_received(self, file: str) -> None:
                outer.received.append(os.path.basename(file))

        authorizer = DummyAuthorizer()
        authorizer.add_user("till", "secret", str(root), perm="elradfmw")
        Handler.authorizer = authorizer
        self.server = FTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"timeout": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"ftp://till:secret@127.0.0.1:{self.server.address[1]}"

    def __enter__(self) -> PlainFtp:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.close_all()
        self.thread.join(10)


def test_against_a_plain_ftp_server_uploads_go_through_a_temporary_name(tmp_path: Path) -> None:
    root = tmp_path / "ftproot"
    for folder in ("promotionRedemptionImport", "transactionImport", "importResults", "processed"):
        (root / "integration" / folder).mkdir(parents=True)
    with Outbox(tmp_path / "outbox") as outbox, PlainFtp(root) as ftp:
        from tests.client.test_outbox import receipt, redemption

        for intent in (outbox.add_redemption(redemption()), outbox.add_receipt(receipt())):
            outbox.mark_queued(intent, "offline")
            outbox.release(intent)
        agent = SyncAgent(outbox, None, ftp.url, upload_via_rename=True)
        first = agent.run_once()
        assert first.uploaded == 2 and first.awaiting_results == 2
        names = sorted(os.listdir(root / "integration" / "promotionRedemptionImport"))
        assert names == [outbox.intents(kind=IntentKind.REDEMPTION)[0].file_name]  # no temporary name left
        assert all(name.startswith(".") and name.endswith(".part") for name in ftp.received)

        # Crashed before noting the upload: the file is there with its full size, so it is not sent again.
        (queued_again,) = outbox.intents(IntentState.UPLOADED, kind=IntentKind.REDEMPTION)
        held = outbox.claim(queued_again)
        assert held is not None
        outbox.release(outbox.transition(held, IntentState.QUEUED))
        assert agent.run_once().uploaded == 1
        assert len(ftp.received) == 2

        # Results appear; a plain server wrote them the same way promoflow does.
        from promoflow.wire.xml import ResultRecord, Verdict, result_file_name, write_import_result

        for intent in outbox.intents(IntentState.UPLOADED):
            (root / "integration" / "importResults" / result_file_name(intent.file_name)).write_bytes(
                write_import_result(intent.file_name, [ResultRecord(index=1, verdict=Verdict.APPLIED)])
            )
        final = agent.run_once()
        assert final.results_read == 2 and final.done == 2 and final.undelivered == 0
        assert os.listdir(root / "integration" / "importResults") == []  # read and removed


def test_ftp_urls_are_parsed_with_their_credentials() -> None:
    target = FtpTarget.from_url("ftps://shop%40one:p%3Ass@ftp.example.com:2121/base/")
    assert (target.tls, target.user, target.password, target.host, target.port, target.root) == (
        True,
        "shop@one",
        "p:ss",
        "ftp.example.com",
        2121,
        "/base",
    )
    assert target.path(IMPORT_RESULTS_DIR, "x.xml") == "/base/integration/importResults/x.xml"
    assert "p:ss" not in target.redacted()
    for bad in ("http://h", "ftp://h", "ftp://user@"):
        with pytest.raises(ValueError):
            FtpTarget.from_url(bad)


def _queue_redemptions(outbox: Outbox, customers: list[Customer]) -> list[Intent]:
    now = datetime.now(UTC)
    made = []
    for customer in customers:
        intent = outbox.add_redemption(
            Redemption(
                coupon_id=customer.assignments[0],
                contact_id=customer.contact_id,
                redemption_channel="POS",
                redeemed_on=now,
                store_external_id="S-9",
                unique_receipt_id=f"R-{customer.email}",
            )  # fmt: skip
        )
        made.append(outbox.mark_queued(intent, "offline"))
        outbox.release(intent)
    return made


def test_queued_intents_of_one_kind_go_up_in_batches_and_each_gets_its_own_verdict(
    no_worker: LiveEngage, tmp_path: Path
) -> None:
    pid = no_worker.promotion()
    customers = no_worker.customers([pid], 7)
    with Outbox(tmp_path / "outbox") as outbox:
        made = _queue_redemptions(outbox, customers)
        with no_worker.http() as http:  # one of them is redeemed elsewhere first
            http.post(f"/api/v2/promotions/codes/{customers[3].assignments[0]}/redeem", json="ECOM")
        agent = SyncAgent(outbox, None, no_worker.ftp_url, batch_size=5)
        first = agent.run_once()
        assert first.uploaded == 7 and first.awaiting_results == 7
        files = {str(i.detail["remoteName"]) for i in outbox.intents(IntentState.UPLOADED)}
        assert len(files) == 2 and not any(name in files for name in (i.file_name for i in made))
        assert list(outbox.batches.iterdir()) == []  # a batch file lives only until its upload is noted
        _run_worker(no_worker)
        report = agent.sync_until_settled(30)
        assert report.results_read == 2 and report.done == 6 and report.undelivered == 0
        (conflict,) = report.attention
        assert conflict.id == made[3].id and conflict.verdict == "conflictAlreadyRedeemed"
    counts = no_worker.redemption_counts(a for c in customers for a in c.assignments)
    assert counts == {c.assignments[0]: 1 for c in customers}


def test_a_crash_between_a_batch_upload_and_its_note_resumes_that_batch(
    no_worker: LiveEngage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    customers = no_worker.customers([no_worker.promotion()], 4)
    with Outbox(tmp_path / "outbox") as outbox:
        _queue_redemptions(outbox, customers)

        def crash(*_args: object) -> None:
            raise RuntimeError("the till died after the upload")

        monkeypatch.setattr(SyncAgent, "_note_batch", crash)
        with pytest.raises(RuntimeError):
            SyncAgent(outbox, None, no_worker.ftp_url).run_once()
        monkeypatch.undo()
        (batch,) = [p for p in outbox.batches.iterdir() if p.suffix == ".xml"]
        assert len(outbox.intents(IntentState.QUEUED)) == 4  # nothing was noted

        agent = SyncAgent(outbox, None, no_worker.ftp_url)
        resumed = agent.run_once()  # the same batch, sent again under its name (not yet imported)
        assert resumed.uploaded == 4
        assert {i.detail["remoteName"] for i in outbox.intents(IntentState.UPLOADED)} == {batch.name}
        _run_worker(no_worker)
        report = agent.sync_until_settled(30)
        assert report.done == 4 and report.undelivered == 0 and not report.attention
    assert len(_imports_named(no_worker, batch.name)) == 2  # the second upload was seen as a duplicate
    counts = no_worker.redemption_counts(a for c in customers for a in c.assignments)
    assert counts == {c.assignments[0]: 1 for c in customers}


def test_of_two_uploads_of_one_name_the_result_of_the_one_not_rejected_settles_the_intent(
    no_worker: LiveEngage, tmp_path: Path
) -> None:
    """The till died mid-upload (the server got the start of the file under its name: rejected), and the sync sent
    the whole file again under the same name: every upload has its own result file, and the intent is settled by
    the one that applied the file, whichever order the names sort in."""
    customer = no_worker.customers([no_worker.promotion()], 1)[0]
    with Outbox(tmp_path / "outbox") as outbox:
        intent = _queue_one_redemption(no_worker, outbox, customer)
        start = (
            outbox.read_bytes(intent)[:60] + f"<!-- {intent.id} -->".encode()
        )  # its own (truncated) content
        _upload_by_hand(no_worker, intent, start)  # truncated, still queued
        with no_worker.client() as client:
            agent = SyncAgent(outbox, client, no_worker.ftp_url, keep_results=True)
            assert agent.run_once().uploaded == 2  # nothing says it is there: the whole file goes up again
            _run_worker(no_worker)
            report = agent.sync_until_settled(30)
        assert not report.attention and report.undelivered == 0
        assert {i.state for i in outbox.intents()} == {IntentState.DONE}
        done = outbox.get(intent.id)
        assert done is not None and done.state is IntentState.DONE and done.verdict == "applied"
    imports = _imports_named(no_worker, intent.file_name)
    assert sorted(i["status"] for i in imports) == ["done", "rejected"]
    with FtpConnection(FtpTarget.from_url(no_worker.ftp_url)) as ftp:
        listed = set(ftp.listing(IMPORT_RESULTS_DIR))
    assert {i["resultFile"].rsplit("/", 1)[1] for i in imports} <= listed  # two result files, kept
    assert no_worker.redemption_counts(customer.assignments) == {customer.assignments[0]: 1}
