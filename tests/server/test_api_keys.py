"""Named API keys on SQLite and PostgreSQL: the service (create, list, revoke, rotate, allow-list), revocation
across the key cache's expiry (the cache's clock moved, no sleeping), "last used at" kept without a write per
request, the /api/v2/promoflow/keys extension for admin-scope keys, `promoflow key …`, and migration 0018 naming
the keys existing tenants already have."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from promoflow.kit.clock import FrozenClock
from promoflow.server.config import Settings
from promoflow.server.db import Database, make_sync_engine
from promoflow.server.http.app import create_app
from promoflow.server.migrate import upgrade
from promoflow.server.models import api_key, tenant
from promoflow.server.models.base import UTCDateTime
from promoflow.server.tenant.errors import ApiKeyExistsError, ApiKeyNotFoundError, InvalidApiKeyNameError
from promoflow.server.tenant.keys import ApiKeyService, KeyUsage, NewKey
from promoflow.server.tenant.service import TenantService
from tests.conftest import Api, make_tenant

from ._support import assert_error
from .test_cli import _clean_env, fresh_db  # noqa: F401  (a fixture)
from .test_migrations import empty_db  # noqa: F401  (a fixture)


class On:
    """``On(settings, tenant_name)(lambda svc, conn, tenant_id: …)``: one unit of work with the key service, as
    another process (the CLI, another server) would do it."""

    def __init__(self, settings: Settings, tenant_name: str) -> None:
        self.settings = settings
        self.tenant = tenant_name

    def __call__(self, fn: Any) -> Any:
        async def run() -> Any:
            db = Database(self.settings.resolved_database_url(), pool_size=1)
            try:
                async with db.write() as conn:
                    now = datetime.now(UTC)
                    row = await TenantService(now).by_name(conn, self.tenant)
                    return await fn(ApiKeyService(now), conn, row.id)
            finally:
                await db.dispose()

        return asyncio.run(run())


def _status(api: Api, key: str) -> int:
    return int(api.client.get("/api/v2/contacts/count", headers={"apikey": key}).status_code)


# ------------------------------------------------------------------------------------------------ service


def test_keys_are_named_listed_rotated_and_revoked(api: Api) -> None:
    on = On(api.settings, api.tenant["name"])
    till: NewKey = on(lambda s, c, t: s.create(c, t, "till 1", allow=["127.0.0.1", "10.0.0.0/8"]))
    web: NewKey = on(lambda s, c, t: s.create(c, t, "web shop"))
    assert till.secret.startswith("pf_") and till.key.prefix == till.secret[:10]
    assert till.key.ip_allowlist == ("127.0.0.1/32", "10.0.0.0/8") and till.key.scope == "api"
    names = [k.name for k in on(lambda s, c, t: s.list(c, t))]
    assert names == ["default", "till 1", "web shop"]
    with pytest.raises(ApiKeyExistsError):
        on(lambda s, c, t: s.create(c, t, "web shop"))
    for bad in ("", " ", "x" * 65, "a/b", "-lead", "tab\there"):
        with pytest.raises(InvalidApiKeyNameError):
            on(lambda s, c, t, bad=bad: s.create(c, t, bad))
    assert _status(api, web.secret) == 200
    rotated: NewKey = on(lambda s, c, t: s.rotate(c, t, "web shop"))
    assert (
        rotated.key.id == web.key.id and rotated.key.rotated_at is not None and rotated.secret != web.secret
    )
    revoked = on(lambda s, c, t: s.revoke(c, t, "till 1"))
    assert revoked.revoked_at is not None
    with pytest.raises(ApiKeyNotFoundError):
        on(lambda s, c, t: s.revoke(c, t, "till 1"))
    with pytest.raises(ApiKeyNotFoundError):
        on(lambda s, c, t: s.rotate(c, t, "nobody"))
    listed = on(lambda s, c, t: s.list(c, t))
    assert [(k.name, k.active) for k in listed] == [("default", True), ("web shop", True), ("till 1", False)]
    # A revoked key's name is free again; another tenant's names are its own.
    on(lambda s, c, t: s.create(c, t, "till 1"))
    other = api.new_tenant()
    On(api.settings, other["name"])(lambda s, c, t: s.create(c, t, "web shop"))
    with pytest.raises(ApiKeyNotFoundError):
        On(api.settings, other["name"])(lambda s, c, t: s.revoke(c, t, "till 1"))
    assert _status(api, api.tenant["apiKey"]) == 200


def test_two_keys_created_with_one_name_at_once_give_one_key(api: Api) -> None:
    """Concurrent creates of one name (real threads, each its own connection): the partial unique index lets one
    win; the other is ApiKeyExists, never a 500 or a second active key."""
    from concurrent.futures import ThreadPoolExecutor

    on = On(api.settings, api.tenant["name"])

    def create(_: int) -> str:
        try:
            on(lambda s, c, t: s.create(c, t, "race"))
            return "created"
        except ApiKeyExistsError:
            return "exists"

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(create, range(4)))
    assert outcomes.count("created") == 1 and outcomes.count("exists") == 3
    assert [k.name for k in on(lambda s, c, t: s.list(c, t))].count("race") == 1


def test_the_keys_allow_list_is_checked_in_addition_to_the_tenants(api: Api) -> None:
    """Over real TCP a request comes from 127.0.0.1; the test client's address is not an IP (refused by any list)."""
    on = On(api.settings, api.tenant["name"])
    key = on(lambda s, c, t: s.create(c, t, "till")).secret
    assert _status(api, key) == 200
    on(lambda s, c, t: s.set_allowlist(c, t, "till", "10.0.0.0/8"))
    api.client.app.state.promoflow.key_cache.clear()  # type: ignore[attr-defined]
    r = api.client.get("/api/v2/contacts/count", headers={"apikey": key})
    assert_error(r, 403, "IpNotAllowed")
    assert _status(api, api.tenant["apiKey"]) == 200  # the tenant has no list of its own


# -------------------------------------------------------------------------------------------- key cache


@pytest.fixture
def cached(settings: Settings, clock: FrozenClock) -> Iterator[tuple[Api, list[float]]]:
    """An app whose key cache keeps a key 30 s, on a clock the test moves."""
    now = [1000.0]
    app = create_app(
        settings.model_copy(update={"api_key_cache_seconds": 30.0}), clock=clock, run_worker=False
    )
    with TestClient(app) as client:
        app.state.promoflow.monotonic = lambda: now[0]
        yield Api(client, clock, make_tenant(settings), settings), now


def test_a_key_revoked_elsewhere_is_refused_once_the_cache_expires(cached: tuple[Api, list[float]]) -> None:
    """Revoked by another process (the CLI, another server): this server trusts its cache for up to
    PROMOFLOW_API_KEY_CACHE_SECONDS, then refuses the key."""
    api, now = cached
    on = On(api.settings, api.tenant["name"])
    key = on(lambda s, c, t: s.create(c, t, "till")).secret
    assert _status(api, key) == 200
    on(lambda s, c, t: s.revoke(c, t, "till"))
    now[0] += 29.0
    assert _status(api, key) == 200  # still cached: the documented window
    now[0] += 2.0
    assert_error(api.client.get("/api/v2/contacts/count", headers={"apikey": key}), 401, "InvalidApiKey")
    # A rotated key alike: the old secret works until the cache expires, then only the new one.
    old = on(lambda s, c, t: s.create(c, t, "web")).secret
    assert _status(api, old) == 200
    new = on(lambda s, c, t: s.rotate(c, t, "web")).secret
    assert _status(api, old) == 200 and _status(api, new) == 200
    now[0] += 31.0
    assert _status(api, old) == 401 and _status(api, new) == 200


def test_a_key_revoked_through_this_server_is_refused_at_once(cached: tuple[Api, list[float]]) -> None:
    api, _ = cached
    on = On(api.settings, api.tenant["name"])
    on(lambda s, c, t: s.create(c, t, "admin", scope="admin"))
    admin_key = on(lambda s, c, t: s.rotate(c, t, "admin")).secret
    key = on(lambda s, c, t: s.create(c, t, "till")).secret
    assert _status(api, key) == 200
    r = api.client.post("/api/v2/promoflow/keys/till/revoke", headers={"apikey": admin_key})
    assert r.status_code == 200, r.text
    assert _status(api, key) == 401  # no cache expiry needed: this process forgot the key


# -------------------------------------------------------------------------------------------- last used


def test_last_used_is_written_at_most_once_a_minute_per_key(settings: Settings) -> None:
    db = Database(settings.resolved_database_url(), pool_size=1)
    tenant_info = make_tenant(settings)
    on = On(settings, tenant_info["name"])
    key = on(lambda s, c, t: s.create(c, t, "till")).key
    at = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    clock = FrozenClock(at)

    async def run() -> list[int]:
        usage = KeyUsage(db, clock, every=60.0)
        written = []
        try:
            for i in range(100):
                usage.note("k", key.id, 1000.0 + i * 0.1)
            written.append(await usage.flush())  # one write for 100 uses
            clock.set(at + timedelta(seconds=59))
            usage.note("k", key.id, 1059.0)
            written.append(await usage.flush())  # within the minute: nothing to write
            clock.set(at + timedelta(seconds=61))
            usage.note("k", key.id, 1061.0)
            usage.note("other", None, 1061.0)  # no key: nothing
            written.append(await usage.flush())
        finally:
            await db.dispose()
        return written

    assert asyncio.run(run()) == [1, 0, 1]
    listed = on(lambda s, c, t: s.list(c, t))
    assert {k.name: k.last_used_at for k in listed}["till"] == at + timedelta(seconds=61)


def test_a_flush_while_the_background_writer_is_writing_returns_once_that_write_is_in(
    settings: Settings,
) -> None:
    """The race CI once hit: the background task had taken the queued use and was writing it when ``flush`` came,
    found nothing queued and returned at once, before the use was in the database."""
    db = Database(settings.resolved_database_url(), pool_size=2)
    tenant_info = make_tenant(settings)
    key = On(settings, tenant_info["name"])(lambda s, c, t: s.create(c, t, "till")).key
    at = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)

    async def run() -> datetime | None:
        usage = KeyUsage(db, FrozenClock(at))
        inside, go_on = asyncio.Event(), asyncio.Event()
        real_write = db.write

        @contextlib.asynccontextmanager
        async def held_write() -> AsyncIterator[Any]:
            async with real_write() as conn:
                inside.set()
                await go_on.wait()
                yield conn

        db.write = held_write  # type: ignore[method-assign]
        usage.start()
        try:
            usage.note("k", key.id, 1000.0)
            await inside.wait()  # the background task has taken the use and is in its write
            db.write = real_write  # type: ignore[method-assign]
            flushing = asyncio.create_task(usage.flush())
            # One turn of the loop (not a wait for time): flush has run up to its first wait, and waits for the
            # write under way instead of returning "nothing queued".
            await asyncio.sleep(0)
            assert not flushing.done()
            go_on.set()
            await flushing
            async with db.read() as conn:
                return await conn.scalar(sa.select(api_key.c.last_used_at).where(api_key.c.id == key.id))
        finally:
            go_on.set()
            await usage.stop()
            await db.dispose()

    assert asyncio.run(run()) == at


def test_the_server_records_when_a_key_was_last_used(api: Api) -> None:
    on = On(api.settings, api.tenant["name"])
    key = on(lambda s, c, t: s.create(c, t, "till")).secret
    assert {k.name: k.last_used_at for k in on(lambda s, c, t: s.list(c, t))}["till"] is None
    assert _status(api, key) == 200
    st = api.client.app.state.promoflow  # type: ignore[attr-defined]
    assert api.client.portal is not None
    api.client.portal.call(st.key_usage.flush)  # whatever the background writer has not written yet
    used = {k.name: k.last_used_at for k in on(lambda s, c, t: s.list(c, t))}
    assert used["till"] == api.clock.now() and used["default"] is None
    # Rotating clears it: "never" until the new secret is put to use.
    on(lambda s, c, t: s.rotate(c, t, "till"))
    assert {k.name: k.last_used_at for k in on(lambda s, c, t: s.list(c, t))}["till"] is None


# ----------------------------------------------------------------------------------------- API extension


def _admin_key(api: Api, tenant_name: str | None = None) -> str:
    on = On(api.settings, tenant_name or api.tenant["name"])
    return str(on(lambda s, c, t: s.create(c, t, "ops", scope="admin")).secret)


def test_the_keys_api_for_an_admin_scope_key(api: Api) -> None:
    h = {"apikey": _admin_key(api)}
    listed = api.get("/api/v2/promoflow/keys", headers=h).json()["keys"]
    assert [(k["name"], k["scope"], k["active"]) for k in listed] == [
        ("default", "api", True),
        ("ops", "admin", True),
    ]
    assert all("apiKey" not in k for k in listed)
    r = api.post("/api/v2/promoflow/keys", json={"name": "store 7", "ipAllowList": ["127.0.0.1"]}, headers=h)
    assert r.status_code == 201, r.text
    created = r.json()
    assert (
        created["name"] == "store 7"
        and created["ipAllowList"] == ["127.0.0.1/32"]
        and created["scope"] == "api"
    )
    secret = created["apiKey"]
    assert_error(api.post("/api/v2/promoflow/keys", json={"name": "store 7"}, headers=h), 409, "ApiKeyExists")
    assert_error(
        api.post("/api/v2/promoflow/keys", json={"name": "a/b"}, headers=h), 400, "InvalidApiKeyName"
    )
    assert_error(
        api.post("/api/v2/promoflow/keys", json={"name": "x", "ipAllowList": ["nope"]}, headers=h),
        400,
        "InvalidIpAllowList",
    )
    assert_error(
        api.post("/api/v2/promoflow/keys", json={"name": "x", "scope": "root"}, headers=h),
        400,
        "InvalidPayload",
    )
    r = api.post("/api/v2/promoflow/keys/store 7/rotate", headers=h)
    assert r.status_code == 200 and r.json()["apiKey"] != secret and r.json()["rotatedOn"]
    r = api.post("/api/v2/promoflow/keys/store 7/revoke", headers=h)
    assert r.status_code == 200 and r.json()["active"] is False and "apiKey" not in r.json()
    assert_error(api.post("/api/v2/promoflow/keys/store 7/revoke", headers=h), 404, "ApiKeyNotFound")
    # The secret is never stored for replay: an Idempotency-Key is refused.
    r = api.post("/api/v2/promoflow/keys", json={"name": "y"}, headers={**h, "Idempotency-Key": "k1"})
    assert_error(r, 400, "InvalidIdempotencyKey")


def test_the_keys_api_refuses_keys_without_the_admin_scope_and_other_tenants_keys(api: Api) -> None:
    for method, path in [("get", "/api/v2/promoflow/keys"), ("post", "/api/v2/promoflow/keys"),
                         ("post", "/api/v2/promoflow/keys/default/revoke"),
                         ("post", "/api/v2/promoflow/keys/default/rotate")]:  # fmt: skip
        kw = {"json": {"name": "z"}} if path.endswith("keys") and method == "post" else {}
        assert_error(getattr(api, method)(path, **kw), 403, "AdminScopeRequired")
    assert _status(api, api.tenant["apiKey"]) == 200  # nothing was revoked
    other = api.new_tenant()
    h = {"apikey": _admin_key(api, other["name"])}
    assert_error(api.post("/api/v2/promoflow/keys/ghost/revoke", headers=h), 404, "ApiKeyNotFound")
    On(api.settings, api.tenant["name"])(lambda s, c, t: s.create(c, t, "mine"))
    assert_error(api.post("/api/v2/promoflow/keys/mine/revoke", headers=h), 404, "ApiKeyNotFound")
    assert [k["name"] for k in api.get("/api/v2/promoflow/keys", headers=h).json()["keys"]] == [
        "default",
        "ops",
    ]


# ---------------------------------------------------------------------------------------------------- CLI


def _cli(*args: str) -> Any:
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "promoflow.cli", *args], capture_output=True, text=True,
                          env=_clean_env(), timeout=120)  # fmt: skip


def test_promoflow_key_commands(fresh_db: str, tmp_path: Path) -> None:  # noqa: F811
    where = ("--database-url", fresh_db, "--data-dir", str(tmp_path / "data"))
    assert _cli("db", "upgrade", *where).returncode == 0
    assert _cli("tenant", "create", "acme", "--json", *where).returncode == 0
    r = _cli("key", "create", "acme", "--name", "store 12", "--allow-ip", "10.0.0.0/8", "--allow-ip", "::1",
             "--json", *where)  # fmt: skip
    assert r.returncode == 0, r.stderr
    created = json.loads(r.stdout)
    assert created["name"] == "store 12" and created["apiKey"].startswith("pf_")
    assert created["ipAllowList"] == ["10.0.0.0/8", "::1/128"] and created["tenant"] == "acme"
    assert "database: " in r.stderr
    r = _cli("key", "create", "acme", "--name", "store 12", *where)
    assert r.returncode == 2 and r.stderr.strip().endswith(
        "error: ApiKeyExists: the tenant has an active API key named 'store 12'"
    )
    r = _cli("key", "create", "acme", "--name", "bad/name", "--json", *where)
    assert r.returncode == 2 and json.loads(r.stdout)["errorCode"] == "InvalidApiKeyName"
    r = _cli("key", "create", "nobody", "--name", "x", *where)
    assert r.returncode == 2 and "TenantNotFound" in r.stderr
    rows = json.loads(_cli("key", "list", "acme", "--json", *where).stdout)
    assert [(k["name"], k["active"]) for k in rows] == [("default", True), ("store 12", True)]
    text = _cli("key", "list", "acme", *where).stdout
    assert "store 12" in text and "never" in text and created["apiKey"] not in text
    r = _cli("key", "rotate", "acme", "store 12", *where)
    assert r.returncode == 0 and r.stdout.strip().startswith("pf_") and r.stdout.strip() != created["apiKey"]
    r = _cli("key", "allow", "acme", "store 12", *where)
    assert r.returncode == 0 and "any address" in r.stdout
    assert _cli("key", "revoke", "acme", "store 12", *where).returncode == 0
    r = _cli("key", "revoke", "acme", "store 12", *where)
    assert r.returncode == 2 and "ApiKeyNotFound: no active API key named 'store 12'" in r.stderr
    rows = json.loads(_cli("key", "list", "acme", "--json", *where).stdout)
    assert [(k["name"], k["active"]) for k in rows] == [("default", True), ("store 12", False)]


# ---------------------------------------------------------------------------------------------- migration


def test_0018_names_the_keys_tenants_already_have(empty_db: str) -> None:  # noqa: F811
    """Keys made before named keys (label "default", none, or "rotated" after `tenant rotate-key`) keep working
    and get names unique among the tenant's active keys."""
    engine = make_sync_engine(empty_db)
    t1, t2 = uuid.uuid4(), uuid.uuid4()
    at = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    keys = sa.table(
        "api_key",
        sa.column("id", sa.Uuid()),
        sa.column("tenant_id", sa.Uuid()),
        sa.column("key_hash", sa.String()),
        sa.column("prefix", sa.String()),
        sa.column("label", sa.String()),
        sa.column("created_at", UTCDateTime()),
        sa.column("revoked_at", UTCDateTime()),
    )
    rows = [  # tenant, label, revoked, minutes after `at`
        (t1, "default", True, 0), (t1, "rotated", False, 1), (t1, None, False, 2), (t1, "rotated", False, 3),
        (t2, None, False, 0), (t2, "till", True, 1), (t2, "till", False, 2),
    ]  # fmt: skip
    try:
        upgrade(empty_db, "0017")
        with engine.begin() as conn:
            for t, name in ((t1, "one"), (t2, "two")):
                conn.execute(sa.insert(tenant).values(id=t, name=name, time_zone="UTC", currency="SEK", settings={},
                                                      created_at=at, updated_at=at))  # fmt: skip
            for i, (t, label, revoked, minutes) in enumerate(rows):
                when = at + timedelta(minutes=minutes)
                conn.execute(sa.insert(keys).values(id=uuid.uuid4(), tenant_id=t, key_hash=f"{i:064d}",
                                                    prefix=f"pf_{i}", label=label, created_at=when,
                                                    revoked_at=when if revoked else None))  # fmt: skip
        upgrade(empty_db)
        with engine.connect() as conn:
            got = conn.execute(sa.text("SELECT key_hash, name, scope, revoked_at IS NULL AS active FROM api_key "
                                       "ORDER BY key_hash")).all()  # fmt: skip
    finally:
        engine.dispose()
    assert [(r.name, r.scope, bool(r.active)) for r in got] == [
        ("default", "api", False), ("rotated", "api", True), ("default", "api", True), ("rotated-2", "api", True),
        ("default", "api", True), ("till", "api", False), ("till", "api", True),
    ]  # fmt: skip


def test_key_changes_through_the_api_and_the_cli_name_their_actor(api: Api, tmp_path: Path) -> None:
    from tests.server.audit._support import changes_of

    h = {"apikey": _admin_key(api)}
    start = len(changes_of(api))
    assert api.post("/api/v2/promoflow/keys", json={"name": "pos"}, headers=h).status_code == 201
    assert api.post("/api/v2/promoflow/keys/pos/revoke", headers=h).status_code == 200
    r = _cli("key", "create", api.tenant["name"], "--name", "cli key", "--database-url",
             api.settings.resolved_database_url(), "--data-dir", str(tmp_path))  # fmt: skip
    assert r.returncode == 0, r.stderr
    got = changes_of(api, start)
    assert [(e["action"], e["actor_kind"]) for e in got] == [
        ("api_key.create", "api_key"), ("api_key.revoke", "api_key"), ("api_key.create", "system"),
    ]  # fmt: skip
    assert got[0]["actor"] == "ops" and got[2]["actor"].startswith("cli")
