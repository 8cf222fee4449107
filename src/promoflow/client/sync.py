"""``SyncAgent``: deliver what the outbox holds once the server answers again, and learn each intent's fate.

One pass (:meth:`SyncAgent.run_once`):

1. **Recover**: tidy the outbox after a crash (uncommitted sales discarded, garbage removed).
2. **Settle online** what a crash left *pending*: the same call again with the same idempotency key (so an
   applied one is answered as such), a contact create looked up by its key first. Without an answer it is
   handed over to the file path (*queued*). Without an FTP URL, queued intents are settled online too.
3. **Upload** queued files over FTP (FTPS for ``ftps://``) in creation order, each to its import folder under
   its own name. A file whose import result (or processed copy) is already on the server is not uploaded
   again; one that was accepted but not yet processed may be: the server then reports the same verdicts
   for the duplicate upload and applies nothing twice.
4. **Read results** from ``/integration/importResults``: ``applied``/``duplicate`` → done;
   ``conflictAlreadyRedeemed`` (by someone else), ``expired``, ``notFound``, ``invalid`` → settled, reported
   through ``on_conflict`` and listed by ``promoflow outbox status``; a file the server rejected as a whole
   → dead letter with the reason. Every upload has its own result (``<name>.<import id>.result.xml``); when a
   name was uploaded more than once (a re-upload after a lost reply), the result read is the one of the import
   that applied the file, else a duplicate's, else a rejected one. The result files are then deleted from the
   server (``keep_results=True`` keeps them).

:meth:`run_forever` repeats passes; while the server or the FTP cannot be reached, it waits the background
schedule's growing gaps (Engage: 10 s, 30 s, 60 s, 300 s). :meth:`sync_until_settled` repeats passes until
every intent has its verdict (the server imports files asynchronously), for scripts and the CLI.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from promoflow.client import _durable
from promoflow.client._calls import Calls, run_flow
from promoflow.client._client import EngageClient
from promoflow.client._contacts import ContactCache
from promoflow.client._exceptions import ApiError, PromoflowClientError
from promoflow.client._ftp import FtpConnection, FtpError, FtpRefused, FtpTarget, FtpUnavailable
from promoflow.client._retry import RetryPolicy
from promoflow.client._settle import (
    Settlement,
    format_instant,
    record_settlement,
    redeemed_by_us,
    settle_intent,
    uniform_instants,
    waiting_behind,
)
from promoflow.client.outbox import UNDELIVERED, Intent, IntentKind, IntentState, Outbox
from promoflow.wire.engage import Receipt
from promoflow.wire.xml import (
    IMPORT_RESULTS_DIR,
    PROCESSED_DIR,
    ContactRecord,
    FileKind,
    FileStatus,
    Redemption,
    ResultRecord,
    ResultSummary,
    Verdict,
    XmlRejected,
    load_import_result,
    result_files_for,
    write_contacts,
    write_redemptions,
    write_transactions,
)

__all__ = ["SyncAgent", "SyncReport"]

log = logging.getLogger("promoflow.client.sync")

ConflictCallback = Callable[[Intent], None]


@dataclass
class SyncReport:
    """What one pass did. ``api_online``/``ftp_online`` are None when that side was not needed."""

    api_online: bool | None = None
    ftp_online: bool | None = None
    settled_online: int = 0
    queued: int = 0
    uploaded: int = 0
    """Files now on the server: sent this pass, or found there already (``already_uploaded`` of them)."""
    already_uploaded: int = 0
    results_read: int = 0
    """Result files read (a batch of intents has one)."""
    done: int = 0
    attention: list[Intent] = field(default_factory=list)
    """Intents this pass settled without applying (conflicts, refusals) or dead-lettered."""
    awaiting_results: int = 0
    undelivered: int = 0
    """Intents still without a verdict after the pass (pending, queued or uploaded)."""
    errors: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds spent per stage: ``recover``, ``online``, ``upload``, ``results``."""
    skipped: bool = False
    """Another pass held the outbox's sync lock; this one did nothing."""
    api_configured: bool = True
    """The agent has an API client (else it delivers by file only)."""
    ftp_configured: bool = True
    """The agent has an FTP URL (else queued intents wait for the API)."""

    @property
    def finished(self) -> bool:
        return not self.skipped and self.undelivered == 0

    def summary(self) -> str:
        """What happened, in words: ``API down: 3 queued for FTP; FTP not configured: nothing uploaded; …``."""
        if self.skipped:
            return "another sync pass was running: nothing done"
        if not self.api_configured:
            api = "API not configured"
        elif self.api_online is None:
            api = "API not asked: nothing to send online"
        elif self.api_online:
            api = f"API up: {self.settled_online} settled online"
            if self.queued:
                api += f", {self.queued} queued for FTP"
        elif self.ftp_configured:
            api = f"API down: {self.queued} queued for FTP"
        else:
            api = f"API down: {self.queued} queued, waiting for the API"
        if not self.ftp_configured:
            ftp = "FTP not configured: nothing uploaded"
        elif self.ftp_online is None:
            ftp = "FTP not needed: nothing to upload"
        elif self.ftp_online:
            again = f" ({self.already_uploaded} were there already)" if self.already_uploaded else ""
            ftp = f"FTP up: {self.uploaded} uploaded{again}, {self.results_read} result file(s) read"
        else:
            ftp = "FTP down: nothing uploaded"
        outcome = f"{self.done} done, {len(self.attention)} need attention, {self.undelivered} undelivered"
        if self.awaiting_results:
            outcome += f" ({self.awaiting_results} awaiting import results)"
        return f"{api}; {ftp}; {outcome}"

    def merge(self, later: SyncReport) -> SyncReport:
        """This pass and a later one as one report: counts and lists added, state from the later pass."""
        timings = dict(self.timings)
        for stage, seconds in later.timings.items():
            timings[stage] = timings.get(stage, 0.0) + seconds
        return SyncReport(
            api_online=later.api_online if later.api_online is not None else self.api_online,
            ftp_online=later.ftp_online if later.ftp_online is not None else self.ftp_online,
            settled_online=self.settled_online + later.settled_online,
            queued=self.queued + later.queued,
            uploaded=self.uploaded + later.uploaded,
            already_uploaded=self.already_uploaded + later.already_uploaded,
            results_read=self.results_read + later.results_read,
            done=self.done + later.done,
            attention=[*self.attention, *later.attention],
            awaiting_results=later.awaiting_results,
            undelivered=later.undelivered,
            errors=[*self.errors, *later.errors],
            timings=timings,
            skipped=later.skipped,
            api_configured=later.api_configured,
            ftp_configured=later.ftp_configured,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "apiOnline": self.api_online,
            "ftpOnline": self.ftp_online,
            "settledOnline": self.settled_online,
            "queued": self.queued,
            "uploaded": self.uploaded,
            "alreadyUploaded": self.already_uploaded,
            "resultsRead": self.results_read,
            "done": self.done,
            "attention": [intent.to_json() for intent in self.attention],
            "awaitingResults": self.awaiting_results,
            "undelivered": self.undelivered,
            "errors": self.errors,
            "timings": self.timings,
            "skipped": self.skipped,
            "summary": self.summary(),
        }


def _describe_conflict(record: ResultRecord) -> str:
    """A conflict's reason from the result's fields (when, how, where, on which receipt), written as the
    online path writes it; the server's own text only when the result carries no instant."""
    if record.redeemed_on is None:
        return uniform_instants(record.reason) or "already redeemed"
    parts = [f"already redeemed at {format_instant(record.redeemed_on)}"]
    if record.redemption_channel is not None:
        parts.append(f"via {record.redemption_channel.value}")
    if record.store_external_id:
        parts.append(f"in store {record.store_external_id}")
    if record.unique_receipt_id:
        parts.append(f"(receipt {record.unique_receipt_id})")
    return " ".join(parts)


def _runs(intents: list[Intent], size: int) -> Iterator[list[Intent]]:
    """Consecutive intents of one file kind, at most ``size`` together (creation order is kept: the server
    imports files in upload order)."""
    run: list[Intent] = []
    for intent in intents:
        if run and (intent.file_kind is not run[0].file_kind or len(run) >= size):
            yield run
            run = []
        run.append(intent)
    if run:
        yield run


def _combine(outbox: Outbox, intents: list[Intent]) -> bytes:
    """One file holding the records of ``intents`` (all of one file kind), in their order."""
    records = [outbox.load(intent) for intent in intents]
    kind = intents[0].file_kind
    if kind is FileKind.REDEMPTIONS:
        return write_redemptions([r for r in records if isinstance(r, Redemption)])
    if kind is FileKind.TRANSACTIONS:
        return write_transactions([r for r in records if isinstance(r, Receipt)])
    return write_contacts([r for r in records if isinstance(r, ContactRecord)])


class SyncAgent:
    """Delivers an outbox to the server: online when possible, else over FTP(S), and settles each intent.

    ``client`` may be None for a file-only agent. ``retry`` governs the agent's API calls and, between
    passes, :meth:`run_forever`'s waits (default :meth:`RetryPolicy.background`). ``on_conflict`` is called
    with every intent that ends settled without being applied or dead-lettered. ``contacts`` learns the
    GUIDs of contacts created by file or by a late online create. ``tls_context`` verifies an FTPS server
    (default: the system's CAs).
    """

    def __init__(
        self,
        outbox: Outbox,
        client: EngageClient | None,
        ftp_url: str | None = None,
        *,
        retry: RetryPolicy | None = None,
        on_conflict: ConflictCallback | None = None,
        contacts: ContactCache | None = None,
        tls_context: ssl.SSLContext | None = None,
        ftp_timeout: float = 30.0,
        upload_via_rename: bool = False,
        keep_results: bool = False,
        batch_size: int = 500,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size is at least 1 (1: every intent is uploaded as its own file)")
        self.outbox = outbox
        self.client = client
        self.ftp = FtpTarget.from_url(ftp_url) if ftp_url else None
        self.retry = retry if retry is not None else RetryPolicy.background()
        self.on_conflict = on_conflict
        self.contacts = contacts
        self.tls_context = tls_context
        self.ftp_timeout = ftp_timeout
        self.upload_via_rename = upload_via_rename
        self.keep_results = keep_results
        self.batch_size = batch_size
        self._calls = Calls(self.retry)
        self._probe_calls = Calls(RetryPolicy.never())

    # --------------------------------------------------------------------------------------------- passes

    def run_once(self, *, lock_timeout: float | None = 0) -> SyncReport:
        """One pass (see the module docs). Returns at once with ``skipped`` if another pass is running."""
        report = SyncReport(api_configured=self.client is not None, ftp_configured=self.ftp is not None)
        with self.outbox.sync_lock(lock_timeout) as locked:
            if not locked:
                report.skipped = True
                return report
            self._pass(report)
        report.undelivered = self.outbox.status().undelivered
        return report

    def _pass(self, report: SyncReport) -> None:
        started = time.perf_counter()
        self.outbox.recover()
        report.timings["recover"] = time.perf_counter() - started

        started = time.perf_counter()
        online = self._probe(report)
        online = self._settle_online(IntentState.PENDING, report, online)
        if self.ftp is None:
            self._settle_online(IntentState.QUEUED, report, online)
        report.timings["online"] = time.perf_counter() - started

        if self.ftp is None or not self.outbox.intents((IntentState.QUEUED, IntentState.UPLOADED)):
            return
        try:
            with FtpConnection(self.ftp, timeout=self.ftp_timeout, tls_context=self.tls_context) as ftp:
                report.ftp_online = True
                started = time.perf_counter()
                self._upload(ftp, report)
                report.timings["upload"] = time.perf_counter() - started
                started = time.perf_counter()
                self._read_results(ftp, report)
                report.timings["results"] = time.perf_counter() - started
        except FtpError as exc:
            report.ftp_online = False
            report.errors.append(str(exc))
            log.warning("sync.ftp_unavailable error=%s", exc)

    def _probe(self, report: SyncReport) -> bool:
        if self.client is None:
            return False
        if not self.outbox.intents(IntentState.PENDING) and (
            self.ftp is not None or not self.outbox.intents(IntentState.QUEUED)
        ):
            return False  # nothing to settle online: no need to ask
        try:
            run_flow(self._probe_calls.count_contacts(), self.client)
        except PromoflowClientError as exc:
            report.api_online = False
            if isinstance(exc, ApiError) and exc.status in (401, 403):
                report.errors.append(f"the API refuses the key: {exc}")
            return False
        report.api_online = True
        return True

    def _settle_online(self, state: IntentState, report: SyncReport, online: bool) -> bool:
        if not online and state is not IntentState.PENDING:
            return online  # queued intents wait where they are; pending ones are handed to the file path
        # A contact change waits behind earlier undelivered changes of its contact (same GUID or key): the
        # changes of one contact reach the server in the order the till made them.
        undelivered = self.outbox.intents(UNDELIVERED, file_kind=FileKind.CONTACTS)
        settled_now: set[str] = set()
        for listed in self.outbox.intents(state):
            if (
                state is IntentState.PENDING
                and listed.group is not None
                and not self.outbox.is_committed(listed.group)
            ):
                continue  # a sale still being written (recovery discards it if its writer died)
            ahead = [
                i for i in self.outbox.contact_changes_ahead(listed, undelivered) if i.id not in settled_now
            ]
            intent = self.outbox.claim(listed)
            if intent is None:
                continue
            try:
                if ahead:
                    settlement = Settlement(None, reason=waiting_behind(ahead))
                elif online and self.client is not None:
                    settlement = run_flow(
                        settle_intent(self._calls, intent, self.outbox.load(intent), recovering=True),
                        self.client,
                    )
                    if settlement.deferred:
                        online = False  # no definite answers now: the rest go to the file path
                else:
                    settlement = Settlement(None, reason="the API is unreachable")
                if settlement.deferred:
                    if intent.state is IntentState.PENDING:
                        record_settlement(self.outbox, intent, settlement)
                        report.queued += 1
                    elif not ahead:
                        self.outbox.note_attempt(intent, settlement.reason)
                else:
                    report.settled_online += 1
                    settled_now.add(intent.id)
                    self._finish(record_settlement(self.outbox, intent, settlement), report)
            finally:
                self.outbox.release(intent)
            if intent.group is not None:
                self.outbox.forget_group(intent.group)
        return online

    # --------------------------------------------------------------------------------------------- upload

    def _upload(self, ftp: FtpConnection, report: SyncReport) -> None:
        results = set(ftp.listing(IMPORT_RESULTS_DIR))
        processed = set(ftp.listing(PROCESSED_DIR))
        self._resume_batches(ftp, report, results | processed)
        queued = self.outbox.intents(IntentState.QUEUED)
        folders: dict[str, dict[str, int | None]] = {}
        blocked: set[str] = set()  # contacts with a change this pass cannot take: their later changes wait
        for run in _runs(queued, self.batch_size):
            held: list[Intent] = []
            for listed in run:
                intent = None if listed.contact_marks & blocked else self.outbox.claim(listed)
                if intent is None:
                    blocked |= listed.contact_marks
                else:
                    held.append(intent)
            try:
                if len(held) > 1:
                    self._upload_batch(ftp, held, report)
                elif held:
                    self._upload_one(ftp, held[0], report, results | processed, folders)
            finally:
                for intent in held:
                    self.outbox.release(intent)

    def _upload_one(
        self,
        ftp: FtpConnection,
        intent: Intent,
        report: SyncReport,
        seen: set[str],
        folders: dict[str, dict[str, int | None]],
    ) -> None:
        name = intent.file_name
        data = self.outbox.read_bytes(intent)
        if self.upload_via_rename and intent.remote_folder not in folders:
            folders[intent.remote_folder] = ftp.listing(intent.remote_folder)
        there = folders.get(intent.remote_folder, {})
        # Already on the server (a crash came between the upload and its note): not again.
        if result_files_for(name, seen) or name in seen or there.get(name) == len(data):
            self.outbox.mark_uploaded(intent, name)
            report.uploaded += 1
            report.already_uploaded += 1
            return
        if self._send(ftp, intent.remote_folder, name, data, [intent], report):
            self.outbox.mark_uploaded(intent, name)
            report.uploaded += 1

    def _send(
        self,
        ftp: FtpConnection,
        folder: str,
        name: str,
        data: bytes,
        intents: list[Intent],
        report: SyncReport,
    ) -> bool:
        """Upload one file; False when the server refused it for good (its intents are then dead letters)."""
        try:
            ftp.upload(folder, name, data, via_rename=self.upload_via_rename)
        except FtpRefused as exc:
            if exc.code in ("552", "553"):  # the file itself was refused: no later try can differ
                for intent in intents:
                    self._finish(self.outbox.mark_dead(intent, exc.message, ftpReply=exc.code), report)
                return False
            raise FtpUnavailable(str(exc)) from exc
        return True

    def _upload_batch(self, ftp: FtpConnection, intents: list[Intent], report: SyncReport) -> None:
        """Several queued intents of one kind as one file: written (with the list of its intents) to the
        outbox's batches folder first, so a crash before they are noted as uploaded resumes this very file."""
        kind = intents[0].file_kind
        name = self.outbox.batch_name(kind)
        data = _combine(self.outbox, intents)
        manifest = {"name": name, "folder": intents[0].remote_folder, "intents": [i.id for i in intents]}
        _durable.write_file(self.outbox.batches, name, data, durable=self.outbox.durable, sync_dir=False)
        _durable.write_file(
            self.outbox.batches, f"{name}.json", json.dumps(manifest).encode(), durable=self.outbox.durable
        )
        if self._send(ftp, intents[0].remote_folder, name, data, intents, report):
            self._note_batch(name, intents, report)
        self._drop_batch(name)

    def _note_batch(self, name: str, intents: list[Intent], report: SyncReport) -> None:
        uploaded_at = datetime.now(UTC).isoformat()
        moves = [
            (
                intent,
                {
                    "detail": {
                        **intent.detail,
                        "remoteName": name,
                        "batchIndex": index,
                        "uploadedAt": uploaded_at,
                    },
                    "attempts": intent.attempts + 1,
                },
            )  # fmt: skip
            for index, intent in enumerate(intents)
        ]
        self.outbox.transition_many(moves, IntentState.UPLOADED)
        report.uploaded += len(intents)

    def _drop_batch(self, name: str) -> None:
        _durable.remove(self.outbox.batches / f"{name}.json")
        _durable.remove(self.outbox.batches / name)

    def _resume_batches(self, ftp: FtpConnection, report: SyncReport, seen: set[str]) -> None:
        """Batches a crash left between their upload and its note: noted if the server has them (or sent
        again: the server recognises the same content and applies nothing twice)."""
        for entry in sorted(self.outbox.batches.glob("*.json")):
            if _durable.is_tmp(entry.name):
                continue
            manifest = json.loads(entry.read_bytes())
            name = str(manifest["name"])
            listed = [self.outbox.get(str(i)) for i in manifest["intents"]]
            # Only intents still queued, at the position they have in the file.
            waiting = [
                (index, i)
                for index, i in enumerate(listed)
                if i is not None and i.state is IntentState.QUEUED
            ]
            held = [(index, h) for index, i in waiting if (h := self.outbox.claim(i)) is not None]
            try:
                if held and (result_files_for(name, seen) or name in seen):
                    report.already_uploaded += len(held)
                elif held:
                    data = (self.outbox.batches / name).read_bytes()
                    if not self._send(ftp, str(manifest["folder"]), name, data, [h for _, h in held], report):
                        held = []
                if held:
                    uploaded_at = datetime.now(UTC).isoformat()
                    moves = [
                        (
                            h,
                            {
                                "detail": {
                                    **h.detail,
                                    "remoteName": name,
                                    "batchIndex": index,
                                    "uploadedAt": uploaded_at,
                                },
                                "attempts": h.attempts + 1,
                            },
                        )  # fmt: skip
                        for index, h in held
                    ]
                    self.outbox.transition_many(moves, IntentState.UPLOADED)
                    report.uploaded += len(held)
            finally:
                for _, h in held:
                    self.outbox.release(h)
            self._drop_batch(name)

    # -------------------------------------------------------------------------------------------- results

    def _read_results(self, ftp: FtpConnection, report: SyncReport) -> None:
        uploaded = self.outbox.intents(IntentState.UPLOADED)
        if not uploaded:
            return
        available = set(ftp.listing(IMPORT_RESULTS_DIR))
        by_file: dict[str, list[Intent]] = {}
        for intent in uploaded:
            remote = intent.detail.get("remoteName")
            if not remote:
                # Its note was lost (a sidecar rebuilt after a power loss): send it again.
                with self.outbox.claimed(intent) as lost:
                    if lost is not None:
                        self.outbox.transition(lost, IntentState.QUEUED, reason="upload note lost")
                continue
            by_file.setdefault(str(remote), []).append(intent)
        for remote, listed in by_file.items():
            candidates = result_files_for(remote, available)  # one per upload of that name
            if not candidates:
                report.awaiting_results += len(listed)
                continue
            name = candidates[0]
            try:
                name, summary, records = _pick_result(ftp, candidates)
            except XmlRejected as exc:
                report.errors.append(f"{name}: unreadable result ({exc}); will read it again")
                report.awaiting_results += len(listed)
                continue
            report.results_read += 1
            by_index = {record.index: record for record in records}
            held = [intent for intent in map(self.outbox.claim, listed) if intent is not None]
            try:
                outcomes: dict[IntentState, list[tuple[Intent, dict[str, Any]]]] = {}
                for intent in held:
                    record = by_index.get(int(intent.detail.get("batchIndex", 0)) + 1)
                    settlement = self._verdict(intent, summary.status, summary.reason, record)
                    assert settlement.state is not None
                    changes: dict[str, Any] = {
                        "verdict": settlement.verdict,
                        "reason": settlement.reason,
                        "detail": {**intent.detail, **settlement.detail},
                    }
                    outcomes.setdefault(settlement.state, []).append((intent, changes))
                for state, moves in outcomes.items():
                    for moved in self.outbox.transition_many(moves, state):
                        self._finish(moved, report)
            finally:
                for intent in held:
                    self.outbox.release(intent)
            if not self.keep_results and len(held) == len(listed):
                for done in candidates:
                    ftp.delete(IMPORT_RESULTS_DIR, done)

    def _verdict(
        self, intent: Intent, status: FileStatus, reason: str | None, record: ResultRecord | None
    ) -> Settlement:
        if status is FileStatus.REJECTED:
            return Settlement(IntentState.DEAD, "rejected", reason or "the server rejected the file")
        if record is None:
            return Settlement(
                IntentState.DEAD, "rejected", "the import result holds no verdict for the record"
            )
        detail: dict[str, Any] = {"via": "file"}
        if record.contact_id:
            detail["contactId"] = record.contact_id
        if status is FileStatus.DUPLICATE:
            detail["duplicateUpload"] = True
        if record.verdict in (Verdict.APPLIED, Verdict.DUPLICATE):
            return Settlement(IntentState.DONE, record.verdict.value, None, detail)
        if record.verdict is Verdict.CONFLICT_ALREADY_REDEEMED:
            if self._ours(intent, record):
                return Settlement(
                    IntentState.DONE, Verdict.DUPLICATE.value, None, {**detail, "settledBy": "result"}
                )
            return Settlement(IntentState.SETTLED, record.verdict.value, _describe_conflict(record), detail)
        return Settlement(IntentState.SETTLED, record.verdict.value, uniform_instants(record.reason), detail)

    def _ours(self, intent: Intent, record: ResultRecord) -> bool:
        """A conflict that is our own sale (:func:`~promoflow.client._settle.redeemed_by_us`)."""
        if intent.kind is not IntentKind.REDEMPTION:
            return False
        mine = self.outbox.load(intent)
        assert isinstance(mine, Redemption)
        return redeemed_by_us(mine, record.redeemed_on, record.unique_receipt_id)

    def _finish(self, intent: Intent, report: SyncReport) -> None:
        if intent.state is IntentState.DONE:
            report.done += 1
            contact_id = intent.detail.get("contactId")
            if self.contacts is not None and intent.contact_key is not None and contact_id:
                self.contacts.save(intent.contact_key[0], intent.contact_key[1], str(contact_id))
            return
        if intent.state in (IntentState.SETTLED, IntentState.DEAD):
            report.attention.append(intent)
            log.warning(
                "sync.attention intent=%s kind=%s verdict=%s reason=%s",
                intent.id, intent.kind.value, intent.verdict, intent.reason,
            )  # fmt: skip
            if self.on_conflict is not None:
                try:
                    self.on_conflict(intent)
                except Exception:  # the POS's handler must not stop the delivery of the rest
                    log.exception("sync.on_conflict_failed intent=%s", intent.id)

    # ------------------------------------------------------------------------------------------- looping

    def sync_until_settled(
        self, timeout: float = 60.0, *, first_poll: float = 0.1, max_poll: float = 2.0
    ) -> SyncReport:
        """Repeat passes until no intent is waiting for a verdict, or ``timeout`` seconds passed: the passes'
        reports merged. Stops early when the server cannot be reached."""
        deadline = time.monotonic() + timeout
        poll = first_poll
        total: SyncReport | None = None
        while True:
            report = self.run_once(lock_timeout=max(0.0, deadline - time.monotonic()))
            total = report if total is None else total.merge(report)
            unreachable = (report.api_online is False and self.ftp is None) or report.ftp_online is False
            if report.finished or unreachable or time.monotonic() >= deadline:
                return total
            # The server imports uploaded files asynchronously: poll for their results, with growing gaps.
            time.sleep(min(poll, max(0.0, deadline - time.monotonic())))
            poll = min(poll * 2, max_poll)

    def run_forever(self, stop: threading.Event | None = None, *, interval: float = 60.0) -> None:
        """Run passes until ``stop`` is set: every ``interval`` seconds while all is well, sooner while
        results are awaited, and along the background schedule while the server cannot be reached."""
        stop = stop or threading.Event()
        failures = 0
        while not stop.is_set():
            try:
                report = self.run_once(lock_timeout=interval)
            except Exception:  # keep the agent alive; the next pass tries again
                log.exception("sync.pass_failed")
                report = SyncReport(api_online=False)
            cut_off = report.api_online is False or report.ftp_online is False
            if cut_off and report.undelivered:
                failures += 1
                wait = self.retry.backoff(failures)
            elif report.awaiting_results:
                failures = 0
                wait = min(interval, 5.0)
            else:
                failures = 0
                wait = interval
            log.info("sync.pass_done undelivered=%d next_in=%.1fs at=%s", report.undelivered, wait,
                     datetime.now().isoformat(timespec="seconds"))  # fmt: skip
            stop.wait(wait)


def _pick_result(ftp: FtpConnection, candidates: list[str]) -> tuple[str, ResultSummary, list[ResultRecord]]:
    """The results of the uploads of one name: the one that applied the file (processed), else a duplicate's (it
    repeats the verdicts of the import that applied the same content), else a rejected one (a truncated attempt
    or a file the server refused)."""
    rank = {FileStatus.PROCESSED: 0, FileStatus.DUPLICATE: 1}
    best: tuple[str, ResultSummary, list[ResultRecord]] | None = None
    for name in candidates:
        summary, records = load_import_result(ftp.download(IMPORT_RESULTS_DIR, name))
        if best is None or rank.get(summary.status, 2) < rank.get(best[1].status, 2):
            best = (name, summary, records)
        if summary.status is FileStatus.PROCESSED:
            break
    assert best is not None
    return best
