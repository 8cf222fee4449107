"""A write-ahead outbox of XML files: every state change is durable before the first network call.

Each *intent* (a redemption, a contact create or update, a receipt) is one XML file in the A13 format the
server's file importers read, named ``YYYYMMDDHHmmss_<seq>_<type>.xml`` (the name sorts in creation order and
is also its name on the FTP server), with a small JSON sidecar (``<id>.json``) holding its state: idempotency
key, checkout group, verdict, reason. The folder holding the XML file *is* the intent's state::

    pending/    written, not yet confirmed (a network call may be in flight, or a crash interrupted it)
    queued/     handed over to the file path: the sync agent uploads it over FTP
    uploaded/   on the FTP server under its final name; waiting for the server's import result
    done/       applied (online, or by file: ``applied``/``duplicate``)
    settled/    the server decided and did not apply it: ``conflictAlreadyRedeemed``, ``expired``,
                ``notFound``, ``invalid`` (see ``verdict`` and ``reason``): the POS must look at it
    dead/       dead letter: the server rejected the file as a whole (``reason`` says why)
    groups/     commit markers of checkouts (see below)

**Durability.** A file is written to a temporary name in its destination folder, fsync'd, renamed, and the
folder fsync'd. A new intent's sidecar is renamed into place before its XML file appears (one folder fsync
then covers both); a transition writes the sidecar into the destination folder, renames the XML file there
and fsyncs both folders, so at every instant the XML file is in exactly one state folder, next to a sidecar
describing that state. The XML file and its name alone still tell the intent's kind, idempotency key and
sale (a file system that reordered renames on power loss cannot make an intent lose them). Nothing is lost and
nothing is sent twice by a crash: the network call happens only after the intent is durable, and a
re-sent intent carries the same idempotency key (redemptions also carry it inside the XML, so the server's
file importer answers ``duplicate`` for a redemption it already applied through the API).

**Checkout groups.** The redemptions and the receipt of one sale are written as a *group* and become live
together when :meth:`Outbox.commit` writes the group's marker: a crash before the marker discards them all
(the sale was not completed), a crash after it leaves them all to be settled. Never half a sale.

**Claims.** An intent being worked on is locked (an advisory ``flock`` on its XML file, held from before the
file appears until :meth:`Outbox.release`); the kernel drops the lock when the process dies. Recovery and
the sync agent only touch intents they can lock, so a live checkout in another process or thread is never
disturbed, and a killed one's intents are picked up at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from promoflow.client import _durable
from promoflow.client._intent import (
    ALLOWED_TRANSITIONS,
    FILE_KINDS,
    Intent,
    IntentKind,
    IntentState,
    InvalidTransition,
    OutboxStatus,
    RecoveryReport,
    creation_order,
    default_key,
    group_token,
    read_records_of,
    utc_now,
)
from promoflow.wire.engage import Receipt
from promoflow.wire.xml import (
    ContactRecord,
    FileKind,
    Redemption,
    XmlRejected,
    file_name,
    write_contacts,
    write_redemptions,
    write_transactions,
)

__all__ = [
    "Intent",
    "IntentKind",
    "IntentState",
    "InvalidTransition",
    "Outbox",
    "OutboxStatus",
    "RecoveryReport",
]

UNDELIVERED = (IntentState.PENDING, IntentState.QUEUED, IntentState.UPLOADED)
"""The states of intents the server has not settled yet."""

STALE_AFTER = timedelta(minutes=10)
"""Temporary files and orphaned sidecars older than this are garbage from a crash (younger ones may belong
to a writer that is still busy)."""


GROUPS = "groups"
BATCHES = "batches"
SYNC_LOCK = ".sync.lock"


class Outbox:
    """The outbox in ``directory`` (created if missing). Safe to share between threads; several processes may
    use one directory (claims are file locks).

    ``sender`` goes into every file name (letters, digits, ``-``, ``_``, ``.``; e.g. the store id) so files
    of several tills never collide on the FTP server. ``durable=False`` skips fsync (tests, benchmarks of the
    rest: never in production).
    """

    def __init__(self, directory: str | os.PathLike[str], *, sender: str = "", durable: bool = True) -> None:
        self.directory = Path(directory)
        self.durable = durable
        if len(sender) > 30 or not all(ch.isascii() and (ch.isalnum() or ch in "-.") for ch in sender):
            raise ValueError("sender: at most 30 ASCII letters, digits, '-' or '.'")
        self._sender = f"{sender}-" if sender else ""
        for state in IntentState:
            (self.directory / state.value).mkdir(parents=True, exist_ok=True)
        (self.directory / GROUPS).mkdir(exist_ok=True)
        (self.directory / BATCHES).mkdir(exist_ok=True)
        self._mutex = threading.Lock()
        self._held: dict[str, int] = {}
        self._last_seq = 0

    # -------------------------------------------------------------------------------------------- paths

    def folder(self, state: IntentState) -> Path:
        return self.directory / state.value

    @property
    def batches(self) -> Path:
        """Where the sync agent keeps a batch file (several intents in one upload) until it is uploaded."""
        return self.directory / BATCHES

    def path(self, intent: Intent) -> Path:
        """Where the intent's XML file is now."""
        return self.folder(intent.state) / intent.file_name

    def read_bytes(self, intent: Intent) -> bytes:
        return self.path(intent).read_bytes()

    def load(self, intent: Intent) -> Redemption | ContactRecord | Receipt:
        """The intent's record, read back from its XML file (what the server's importer will read)."""
        values = read_records_of(intent.kind, self.read_bytes(intent))
        if len(values) != 1:
            raise ValueError(f"intent {intent.id} holds {len(values)} records, expected one")
        record: Redemption | ContactRecord | Receipt = values[0]
        return record

    # ----------------------------------------------------------------------------------------- creating

    def _new_id(self, kind: IntentKind, group: str | None) -> str:
        with self._mutex:
            # Microseconds, strictly increasing within this process, so names sort in creation order; the
            # tail keeps two processes writing in the same microsecond apart: random, or for an intent of a
            # group the group's token (so the file name alone says which sale it belongs to).
            seq = max(time.time_ns() // 1000, self._last_seq + 1)
            self._last_seq = seq
        tail = group_token(group) if group is not None else secrets.token_hex(4)
        sender = f"{self._sender}{seq:016d}-{tail}"
        return file_name(FILE_KINDS[kind], datetime.fromtimestamp(seq / 1e6, UTC), sender).removesuffix(
            ".xml"
        )

    def batch_name(self, kind: FileKind) -> str:
        """A new file name for a batch of ``kind`` (same convention, its own id)."""
        with self._mutex:
            seq = max(time.time_ns() // 1000, self._last_seq + 1)
            self._last_seq = seq
        sender = f"{self._sender}{seq:016d}-b{secrets.token_hex(4)}"
        return file_name(kind, datetime.fromtimestamp(seq / 1e6, UTC), sender)

    def add_redemption(
        self, redemption: Redemption, *, group: str | None = None, detail: Mapping[str, Any] | None = None
    ) -> Intent:
        """Write a redemption intent (held; see :meth:`release`). Its idempotency key is the record's, or a new
        one written into the record. ``detail`` goes into the sidecar (the checkout notes the promotion's id
        and name there, so every report of the intent can say which promotion it was for)."""
        if redemption.idempotency_key is None:
            redemption = redemption.model_copy(update={"idempotency_key": str(uuid.uuid4())})
        assert redemption.idempotency_key is not None
        data = write_redemptions([redemption])
        return self._add(IntentKind.REDEMPTION, data, redemption.idempotency_key, group=group, detail=detail)

    def add_receipt(
        self, receipt: Receipt, *, group: str | None = None, idempotency_key: str | None = None
    ) -> Intent:
        """Write a receipt intent (held). On resend the server dedupes it by ``uniqueReceiptId`` too."""
        data = write_transactions([receipt])
        return self._add(IntentKind.RECEIPT, data, idempotency_key, group=group)

    def add_contact(
        self,
        contact: ContactRecord,
        *,
        key: tuple[str, str] | None = None,
        idempotency_key: str | None = None,
        group: str | None = None,
    ) -> Intent:
        """Write a contact intent (held): an update when the record names its contact (``contact_id``, or
        ``match_key`` when the GUID is not known), else a create. ``key`` (type, value) is how the till knows
        the contact: a create is found again by it, and the changes of one contact are delivered in order
        (see :meth:`contact_changes_ahead`)."""
        kind = IntentKind.CONTACT_UPDATE if contact.is_update else IntentKind.CONTACT_CREATE
        if key is None and contact.match_key is not None and contact.match_key_type is not None:
            key = (contact.match_key_type, contact.match_key)
        data = write_contacts([contact])
        return self._add(
            kind, data, idempotency_key, group=group, contact_key=key, contact_id=contact.contact_id
        )

    def contact_changes_ahead(self, intent: Intent, among: Iterable[Intent] | None = None) -> list[Intent]:
        """The undelivered (pending, queued, uploaded) changes of the same contact (same GUID or key) that
        were written before ``intent``: while there are any, ``intent`` must wait behind them. ``among``: the
        undelivered intents to look at, if the caller has listed them already."""
        marks = intent.contact_marks
        if not marks:
            return []
        order = creation_order(intent.id)
        candidates = self.intents(UNDELIVERED, file_kind=FileKind.CONTACTS) if among is None else among
        return [
            other
            for other in candidates
            if other.id != intent.id and other.contact_marks & marks and creation_order(other.id) < order
        ]

    def _add(
        self,
        kind: IntentKind,
        data: bytes,
        idempotency_key: str | None,
        *,
        group: str | None,
        contact_key: tuple[str, str] | None = None,
        contact_id: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> Intent:
        if group is not None and (not group or not all(ch.isalnum() or ch in "-_." for ch in group)):
            raise ValueError("a group id is letters, digits, '-', '_' or '.'")
        if len(read_records_of(kind, data)) != 1:  # never queue a file the server would refuse
            raise ValueError("an intent holds exactly one record")
        now = utc_now()
        intent_id = self._new_id(kind, group)
        intent = Intent(
            id=intent_id,
            kind=kind,
            state=IntentState.PENDING,
            # By default derived from the id, so that the XML file and its name alone tell it again.
            idempotency_key=idempotency_key or default_key(intent_id),
            created_at=now,
            updated_at=now,
            group=group,
            contact_key=contact_key,
            contact_id=contact_id,
            detail=dict(detail or {}),
        )
        folder = self.folder(IntentState.PENDING)
        # The sidecar first, so the XML file (the intent) never appears without it; one folder fsync makes
        # both names durable. (Should a file system persist the two renames out of order on power loss, the
        # XML file and its name alone still tell the kind, the key and the sale: see _rebuild.)
        _durable.write_file(
            folder, f"{intent.id}.json", self._sidecar(intent), durable=self.durable, sync_dir=False
        )
        try:
            _, fd = _durable.write_file_locked(folder, intent.file_name, data, durable=self.durable)
        except BaseException:
            _durable.remove(folder / f"{intent.id}.json")
            raise
        with self._mutex:
            self._held[intent.id] = fd
        return intent

    @staticmethod
    def _sidecar(intent: Intent) -> bytes:
        return json.dumps(intent.to_json(), sort_keys=True).encode()

    # ------------------------------------------------------------------------------------------- groups

    def commit(self, group: str, intents: Iterable[Intent] = ()) -> None:
        """Make a group's pending intents live (the commit point of a sale): its marker, written durably."""
        body = {"group": group, "committedAt": utc_now().isoformat(), "intents": [i.id for i in intents]}
        _durable.write_file(
            self.directory / GROUPS, f"{group}.json", json.dumps(body).encode(), durable=self.durable
        )

    def is_committed(self, group: str) -> bool:
        return (self.directory / GROUPS / f"{group}.json").exists()

    def forget_group(self, group: str) -> None:
        """Drop a group's marker once none of its intents is pending any more."""
        if not any(i.group == group for i in self.intents(IntentState.PENDING)):
            _durable.remove(self.directory / GROUPS / f"{group}.json")

    def discard(self, intent: Intent) -> None:
        """Delete a held pending intent that was never committed (its sale did not complete)."""
        if intent.state is not IntentState.PENDING or intent.id not in self._held:
            raise InvalidTransition("only a held, pending intent can be discarded")
        folder = self.folder(IntentState.PENDING)
        _durable.remove(folder / intent.file_name, durable=self.durable)
        _durable.remove(folder / f"{intent.id}.json")
        self.release(intent)

    # ------------------------------------------------------------------------------------------- claims

    def holds(self, intent: Intent) -> bool:
        with self._mutex:
            return intent.id in self._held

    def claim(self, intent: Intent) -> Intent | None:
        """Lock the intent for this caller and return its current state, or None when someone else holds it
        or it has moved on since it was listed."""
        with self._mutex:
            if intent.id in self._held:
                return None
        path = self.path(intent)
        fd = _durable.try_lock(path)
        if fd is None:
            return None
        if not _durable.same_file(fd, path):
            _durable.unlock(fd)
            return None
        current = self._read(intent.state, intent.id)
        if current is None:
            _durable.unlock(fd)
            return None
        with self._mutex:
            if intent.id in self._held:  # another thread of ours won meanwhile
                _durable.unlock(fd)
                return None
            self._held[intent.id] = fd
        return current

    @contextlib.contextmanager
    def claimed(self, intent: Intent) -> Iterator[Intent | None]:
        """``with outbox.claimed(intent) as held:`` – the claimed intent (or None), released at the end."""
        held = self.claim(intent)
        try:
            yield held
        finally:
            if held is not None:
                self.release(held)

    def release(self, intent: Intent) -> None:
        with self._mutex:
            fd = self._held.pop(intent.id, None)
        if fd is not None:
            _durable.unlock(fd)

    def close(self) -> None:
        """Release every claim of this object."""
        with self._mutex:
            held, self._held = self._held, {}
        for fd in held.values():
            _durable.unlock(fd)

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------------------------------- transitions

    def transition(self, intent: Intent, state: IntentState, **changes: Any) -> Intent:
        """Move a held intent to ``state`` (or rewrite its sidecar when the state stays), crash-safely."""
        if not self.holds(intent):
            raise InvalidTransition(f"intent {intent.id} is not held by this outbox")
        if state not in ALLOWED_TRANSITIONS[intent.state]:
            raise InvalidTransition(f"{intent.id}: {intent.state.value} → {state.value} is not allowed")
        moved = dataclasses.replace(intent, state=state, updated_at=utc_now(), **changes)
        src_folder, dest_folder = self.folder(intent.state), self.folder(state)
        sidecar = self._sidecar(moved)
        if state is intent.state:
            _durable.write_file(dest_folder, f"{intent.id}.json", sidecar, durable=self.durable)
            return moved
        # 1. the new state's sidecar in the destination; 2. the XML file follows (the state), and both folders
        # are fsync'd; 3. the old sidecar goes (a crash before leaves an orphan that recovery removes).
        _durable.write_file(dest_folder, f"{intent.id}.json", sidecar, durable=self.durable, sync_dir=False)
        _durable.move(src_folder / intent.file_name, dest_folder / intent.file_name, durable=self.durable)
        _durable.remove(src_folder / f"{intent.id}.json")
        return moved

    def transition_many(
        self, moves: Sequence[tuple[Intent, Mapping[str, Any]]], state: IntentState
    ) -> list[Intent]:
        """Move many held intents to ``state`` at once (each with its own changes): every sidecar and file is
        renamed, then each folder is fsync'd once, not once per intent. A sidecar's content is not fsync'd
        here: after a power loss that lost one, the intent is rebuilt from its file (see ``_rebuild``); its
        state, the folder, is durable all the same."""
        now = utc_now()
        moved: list[Intent] = []
        for intent, _changes in moves:
            if not self.holds(intent):
                raise InvalidTransition(f"intent {intent.id} is not held by this outbox")
            if state not in ALLOWED_TRANSITIONS[intent.state] or state is intent.state:
                raise InvalidTransition(f"{intent.id}: {intent.state.value} → {state.value} is not allowed")
        dest_folder = self.folder(state)
        sources: set[Path] = set()
        for intent, changes in moves:
            new = dataclasses.replace(intent, state=state, updated_at=now, **changes)
            _durable.write_file(dest_folder, f"{intent.id}.json", self._sidecar(new), durable=False)
            moved.append(new)
        for intent, _changes in moves:
            src_folder = self.folder(intent.state)
            _durable.move(src_folder / intent.file_name, dest_folder / intent.file_name, durable=False)
            sources.add(src_folder)
        if self.durable and moves:
            _durable.fsync_dir(dest_folder)
            for folder in sources:
                _durable.fsync_dir(folder)
        for intent, _changes in moves:
            _durable.remove(self.folder(intent.state) / f"{intent.id}.json")
        return moved

    def mark_done(self, intent: Intent, verdict: str = "applied", **detail: Any) -> Intent:
        return self.transition(
            intent, IntentState.DONE, verdict=verdict, detail={**intent.detail, **detail}, reason=None
        )

    def mark_queued(self, intent: Intent, reason: str | None = None) -> Intent:
        return self.transition(intent, IntentState.QUEUED, reason=reason, attempts=intent.attempts + 1)

    def mark_uploaded(self, intent: Intent, remote_name: str) -> Intent:
        detail = {**intent.detail, "remoteName": remote_name, "uploadedAt": utc_now().isoformat()}
        return self.transition(intent, IntentState.UPLOADED, detail=detail, attempts=intent.attempts + 1)

    def mark_settled(self, intent: Intent, verdict: str, reason: str | None = None, **detail: Any) -> Intent:
        return self.transition(
            intent, IntentState.SETTLED, verdict=verdict, reason=reason, detail={**intent.detail, **detail}
        )

    def mark_dead(self, intent: Intent, reason: str, **detail: Any) -> Intent:
        return self.transition(
            intent, IntentState.DEAD, verdict="rejected", reason=reason, detail={**intent.detail, **detail}
        )

    def note_attempt(self, intent: Intent, reason: str | None = None) -> Intent:
        """Record a failed settlement attempt without changing the state."""
        return self.transition(intent, intent.state, attempts=intent.attempts + 1, reason=reason)

    def acknowledge(self, intent: Intent) -> Intent:
        """The POS has dealt with a settled or dead intent: it leaves the ``attention`` list."""
        return self.transition(intent, intent.state, acknowledged=True)

    # ------------------------------------------------------------------------------------------ reading

    def _read(self, state: IntentState, intent_id: str) -> Intent | None:
        folder = self.folder(state)
        try:
            raw = (folder / f"{intent_id}.json").read_bytes()
        except FileNotFoundError:
            raw = None
        if raw is not None:
            try:
                return Intent.from_json(json.loads(raw), state)
            except (ValueError, KeyError, TypeError):
                raw = None  # a damaged sidecar: rebuilt from the XML file below
        if not (folder / f"{intent_id}.xml").exists():
            return None
        return self._rebuild(state, intent_id)

    def _rebuild(self, state: IntentState, intent_id: str) -> Intent | None:
        """An intent whose sidecar is missing (a file system that reordered writes on power loss): what the
        XML file and its name tell, plus any sidecar of it left in another folder."""
        for other in IntentState:
            with contextlib.suppress(FileNotFoundError, ValueError, KeyError, TypeError):
                data = json.loads((self.folder(other) / f"{intent_id}.json").read_bytes())
                return Intent.from_json(data, state)
        try:
            data_xml = (self.folder(state) / f"{intent_id}.xml").read_bytes()
        except FileNotFoundError:
            return None
        kind_text = intent_id.rsplit("_", 1)[-1]
        key = default_key(intent_id)
        contact_key: tuple[str, str] | None = None
        contact_id: str | None = None
        try:
            record: Any
            if kind_text == FileKind.REDEMPTIONS.value:
                kind = IntentKind.REDEMPTION
                record = read_records_of(kind, data_xml)[0]
                key = record.idempotency_key or key
            elif kind_text == FileKind.TRANSACTIONS.value:
                kind = IntentKind.RECEIPT
            else:
                record = read_records_of(IntentKind.CONTACT_CREATE, data_xml)[0]
                kind = IntentKind.CONTACT_UPDATE if record.is_update else IntentKind.CONTACT_CREATE
                contact_id = record.contact_id
                if record.match_key is not None:
                    contact_key = (record.match_key_type, record.match_key)
        except (ValueError, IndexError, XmlRejected):
            return None
        stamp = datetime.fromtimestamp(os.stat(self.folder(state) / f"{intent_id}.xml").st_mtime, UTC)
        return Intent(intent_id, kind, state, key, stamp, stamp, group=self._group_of(intent_id),
                      contact_key=contact_key, contact_id=contact_id)  # fmt: skip

    def _group_of(self, intent_id: str) -> str | None:
        """The group an intent's name points to: a committed group's id, or a placeholder for a group that
        was never committed (so that recovery discards the intent)."""
        token = intent_id.split("_", 1)[-1].rsplit("_", 1)[0].rsplit("-", 1)[-1]
        if not token.startswith("g"):
            return None
        for name in os.listdir(self.directory / GROUPS):
            group = name.removesuffix(".json")
            if group_token(group) == token:
                return group
        return f"uncommitted-{token}"

    def get(self, intent_id: str) -> Intent | None:
        """The intent with this id, wherever it is."""
        for state in IntentState:
            if (self.folder(state) / f"{intent_id}.xml").exists():
                found = self._read(state, intent_id)
                if found is not None:
                    return found
        return None

    def intents(
        self,
        state: IntentState | Iterable[IntentState] | None = None,
        kind: IntentKind | None = None,
        *,
        file_kind: FileKind | None = None,
    ) -> list[Intent]:
        """Intents in ``state`` (one, several, or all), in creation order; only of ``kind``, or only those whose
        file is of ``file_kind`` (told by the file name, so other intents' sidecars are not even read)."""
        if state is None:
            states: list[IntentState] = list(IntentState)
        elif isinstance(state, IntentState):
            states = [state]
        else:
            states = list(state)
        suffix = ".xml" if file_kind is None else f"_{file_kind.value}.xml"
        found: list[Intent] = []
        for one in states:
            for name in os.listdir(self.folder(one)):
                if not name.endswith(suffix) or _durable.is_tmp(name):
                    continue
                intent = self._read(one, name.removesuffix(".xml"))
                if intent is not None and (kind is None or intent.kind is kind):
                    found.append(intent)
        found.sort(key=lambda intent: creation_order(intent.id))
        return found

    def status(self) -> OutboxStatus:
        counts: dict[IntentState, int] = {}
        for state in IntentState:
            counts[state] = sum(
                1
                for name in os.listdir(self.folder(state))
                if name.endswith(".xml") and not _durable.is_tmp(name)
            )
        attention = tuple(
            intent
            for intent in self.intents((IntentState.SETTLED, IntentState.DEAD))
            if not intent.acknowledged
        )
        return OutboxStatus(str(self.directory), counts, attention)

    # ----------------------------------------------------------------------------------------- recovery

    def recover(self, *, stale_after: timedelta = STALE_AFTER) -> RecoveryReport:
        """Tidy up after a crash: discard pending intents of groups never committed, drop markers of finished
        groups, and remove old temporary files and orphaned sidecars. Intents held by a live process (this
        one or another) are never touched. The pending intents it returns are left for the caller to settle.
        """
        markers = {name.removesuffix(".json") for name in os.listdir(self.directory / GROUPS)}
        discarded: list[str] = []
        pending: list[str] = []
        live_groups: set[str] = set()
        for intent in self.intents(IntentState.PENDING):
            if intent.group is not None:
                live_groups.add(intent.group)
            if intent.group is None or self.is_committed(intent.group):
                pending.append(intent.id)
                continue
            held = self.claim(intent)
            if held is None:
                continue  # its writer is alive and may still commit it
            self.discard(held)
            discarded.append(held.id)
        # Markers seen before the listing whose intents have all left pending belong to finished sales.
        for group in markers - live_groups:
            _durable.remove(self.directory / GROUPS / f"{group}.json")
        removed = self._collect_garbage(stale_after)
        return RecoveryReport(tuple(discarded), tuple(pending), removed)

    def _collect_garbage(self, stale_after: timedelta) -> int:
        cutoff = time.time() - stale_after.total_seconds()
        removed = 0
        folders = [self.folder(state) for state in IntentState] + [self.directory / GROUPS, self.batches]
        for folder in folders:
            names = set(os.listdir(folder))
            for name in names:
                path = folder / name
                if folder == self.batches:  # a batch file and its manifest (<name>.json) go together
                    partner = name.removesuffix(".json") if name.endswith(".json") else f"{name}.json"
                    orphan = partner not in names
                else:
                    orphan = (
                        name.endswith(".json") and folder.name != GROUPS and f"{name[:-5]}.xml" not in names
                    )
                if not (_durable.is_tmp(name) or orphan):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    if path.stat().st_mtime < cutoff and _durable.remove(path):
                        removed += 1
        return removed

    def purge(self, older_than: timedelta, states: Iterable[IntentState] = (IntentState.DONE,)) -> int:
        """Delete intents in ``states`` (default: done) last changed longer ago than ``older_than``."""
        cutoff = utc_now() - older_than
        removed = 0
        for intent in self.intents(list(states)):
            if intent.updated_at < cutoff:
                held = self.claim(intent)
                if held is None:
                    continue
                try:
                    folder = self.folder(held.state)
                    _durable.remove(folder / held.file_name)
                    _durable.remove(folder / f"{held.id}.json")
                    removed += 1
                finally:
                    self.release(held)
        return removed

    @contextlib.contextmanager
    def sync_lock(self, timeout: float | None = 0) -> Iterator[bool]:
        """The outbox-wide lock of a sync pass: yields whether it was taken (one pass at a time)."""
        fd = _durable.lock_blocking(self.directory / SYNC_LOCK, timeout)
        try:
            yield fd is not None
        finally:
            if fd is not None:
                _durable.unlock(fd)
