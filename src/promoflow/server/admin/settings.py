"""Settings (admins only): the tenant's settings, its named API keys, its FTP credentials and its users.

Every form goes through the same services as `promoflow tenant set`, `promoflow key …`, `promoflow tenant
rotate-ftp-password` and `promoflow user …`, so the UI cannot accept what they refuse. Secrets (a new key, an FTP
password, a user's generated password) are shown once, in the answer to the POST that made them: never in a URL,
never stored in clear.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fastapi import Depends, Request
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from ...wire.engage import PromotionStatus
from ..exceptions import PromoflowError
from ..http.edge import state_of
from ..models import promotion
from ..tenant.keys import SCOPES, ApiKeyService, forget
from ..tenant.service import (
    CONTACT_TYPES,
    DEFAULT_SETTINGS,
    KEY_ATTRIBUTES,
    MAX_CLOCK_SKEW_SECONDS,
    OPTIONAL_SETTINGS,
    TenantService,
    parse_setting_text,
    setting_names,
)
from ..transfer.accounts import rotate_ftp_password
from .common import admin_router, now_of, reading, writing
from .gateway import local_time_text, status_condition
from .sessions import AdminContext
from .team import TeamService
from .users import Role
from .web import admin, form_of, redirect, render

router = admin_router()

# ------------------------------------------------------------------------------------------------- general


@dataclass(frozen=True)
class SettingField:
    name: str
    label: str
    kind: str = "text"  # text | number | select
    choices: tuple[str, ...] = ()
    hint: str = ""

    @property
    def html_id(self) -> str:
        return "s-" + self.name.replace(".", "-")


def setting_fields(server: Any) -> list[SettingField]:
    """The form's fields: every setting `promoflow tenant set` takes, the known ones with a label of their own."""
    known = [
        SettingField("timeZone", "Time zone", hint="IANA name, e.g. Europe/Stockholm: date-only validity ends at "
                     "midnight there"),  # fmt: skip
        SettingField("currency", "Currency", hint="ISO 4217 code of MONEY promotions without one, e.g. SEK"),
        *(
            SettingField(f"contactKeys.{t}", f"Key attribute of {t} contacts", "select", KEY_ATTRIBUTES,
                         "Can change only while the tenant has no contacts of this type")  # fmt: skip
            for t in CONTACT_TYPES
        ),
        SettingField("customKey", "Custom key", "select", KEY_ATTRIBUTES, "What customKey look-ups search"),
        SettingField("reactivationLimit", "Reactivation limit", "number", hint="Reactivations per assignment"),
        SettingField("rateLimitPerSecond", "Rate limit (requests per second per key)", "number",
                     hint=f"0: no limit; empty: the server's default ({server.default_rate_limit_per_second:g})"),
        SettingField("rateLimitBurst", "Rate limit burst", "number",
                     hint=f"Requests a key may send at once; empty: the server's default "
                          f"({server.default_rate_limit_burst})"),
        SettingField("ipAllowList", "IP allow-list", hint="Addresses or networks allowed to use any of the "
                     "tenant's keys, separated by commas; empty: any address"),
        SettingField("clockSkewSeconds", "Clock-skew tolerance (seconds)", "number",
                     hint=f"How far a till's clock may be off the server's: 0 to {MAX_CLOCK_SKEW_SECONDS}"),
        SettingField("processedFileRetentionDays", "Keep processed upload files (days)", "number",
                     hint=f"0: forever; empty: the server's default ({server.retention_processed_files_days})"),
    ]  # fmt: skip
    names = {f.name for f in known}
    extra = [SettingField(n, n, hint="Another feature's setting (JSON for lists and objects)")
             for n in setting_names() if n not in names]  # fmt: skip
    return known + extra


def setting_texts(info: dict[str, Any]) -> dict[str, str]:
    """Each setting as the form shows it (an optional setting left to the server's default: empty)."""
    stored = info["settings"]
    out = {"timeZone": info["timeZone"], "currency": info["currency"]}
    for t in CONTACT_TYPES:
        out[f"contactKeys.{t}"] = stored.get("contactKeys", {}).get(t, DEFAULT_SETTINGS["contactKeys"][t])
    for name in setting_names():
        if name in out or name.startswith("contactKeys."):
            continue
        value = stored.get(name)
        if value is None:
            out[name] = ""
        elif name == "ipAllowList":
            out[name] = ", ".join(value)
        elif isinstance(value, str):
            out[name] = value
        elif isinstance(value, float) and value.is_integer():
            out[name] = str(int(value))
        else:
            out[name] = json.dumps(value)
    return out


def _short(message: str) -> str:
    """An error next to its field need not name the field again."""
    if message.startswith("setting '") and "': " in message:
        return message.split("': ", 1)[1]
    return message


async def save_settings(
    conn: AsyncConnection, who: AdminContext, now: datetime, changed: dict[str, str]
) -> dict[str, str]:
    """Apply the changed settings (text as `tenant set` takes it) all together, or none: each is first checked
    alone (in a savepoint that is rolled back) so every wrong field gets its own message."""
    svc, tenant_name = TenantService(now, who.tenant.actor), who.tenant.name
    errors: dict[str, str] = {}
    changes: dict[str, Any] = {}
    for name, text in changed.items():
        try:
            one = parse_setting_text([f"{name}={text}"])
            async with conn.begin_nested() as savepoint:
                await svc.update_settings(conn, tenant_name, one)
                await savepoint.rollback()
        except PromoflowError as exc:
            errors[name] = _short(exc.message)
            continue
        for k, v in one.items():
            if k == "contactKeys":
                changes.setdefault("contactKeys", {}).update(v)
            else:
                changes[k] = v
    if not errors and changes:
        await svc.update_settings(conn, tenant_name, changes)
    return errors


@dataclass
class Page:
    """What the Settings page shows besides the tenant's settings."""

    notice: str = ""
    # What a save would change, asked about before it is done.
    confirm: list[str] = field(default_factory=list)
    secret: dict[str, str] | None = None  # {"title", "label", "value", "note"}: shown once
    errors: dict[str, str] = field(default_factory=dict)
    values: dict[str, str] = field(default_factory=dict)


async def _general(request: Request, who: AdminContext, page: Page, status: int = 200) -> Response:
    st = state_of(request)
    async with reading(request) as conn:
        info = await TenantService(now_of(request)).show(conn, who.tenant.name, st.settings)
    values = {**setting_texts(info), **page.values}
    return render(request, "settings.html", status, tab="general", fields=setting_fields(st.settings),
                  values=values, page=page, optional=OPTIONAL_SETTINGS, info=info)  # fmt: skip


@router.get("/settings")
async def general(request: Request, who: AdminContext = Depends(admin)) -> Response:
    notice = "Saved. Running API servers apply the settings within a few seconds." if request.query_params.get(
        "saved") else ""  # fmt: skip
    return await _general(request, who, Page(notice=notice))


# Settings that change what the tenant's promotions mean: a MONEY value's currency, the hours of validity days.
_WIDE_REACHING = frozenset({"currency", "timeZone"})


async def _live_promotions(conn: AsyncConnection, who: AdminContext, now: datetime) -> int:
    """The tenant's promotions not Ended (drafts, scheduled, active), by the promotions list's own status rule."""
    ended = status_condition(PromotionStatus.ENDED, now, who.tenant.tz)
    return int(
        await conn.scalar(
            select(func.count())
            .select_from(promotion)
            .where(promotion.c.tenant_id == who.tenant.tenant_id, ~ended)
        )
        or 0
    )


def _consequences(changed: dict[str, str], live: int) -> list[str]:
    """What saving would do to the tenant's promotions, in words, for the page that asks first."""
    some = f"{live:,} promotion{'s' if live != 1 else ''} not ended"
    out = []
    if "currency" in changed:
        out.append(f"Currency → {changed['currency'] or '(none)'}: every MONEY value of the {some} that names no "
                   "currency of its own is read in the new one from then on, at the till and in the API "
                   "(100 SEK off becomes 100 of the new currency).")  # fmt: skip
    if "timeZone" in changed:
        out.append(f"Time zone → {changed['timeZone'] or '(none)'}: the validity days of the {some} start and "
                   "end at midnight there instead, so coupons may start or stop being valid hours earlier or "
                   "later, and a promotion may show as Scheduled or Ended where it was Active.")  # fmt: skip
    return out


@router.post("/settings")
async def save_general(request: Request, who: AdminContext = Depends(admin)) -> Response:
    form = await form_of(request)
    st = state_of(request)
    async with reading(request) as conn:
        info = await TenantService(now_of(request)).show(conn, who.tenant.name, st.settings)
    current = setting_texts(info)
    sent = {
        f.name: str(form.get(f.name) or "").strip() for f in setting_fields(st.settings) if f.name in form
    }
    changed = {k: v for k, v in sent.items() if v != current.get(k, "")}
    if not changed:
        return redirect(request, "/admin/settings?saved=1")
    if _WIDE_REACHING & changed.keys() and form.get("confirm") != "yes":
        async with reading(request) as conn:
            live = await _live_promotions(conn, who, now_of(request))
        if live:
            return await _general(request, who, Page(values=sent, confirm=_consequences(changed, live)), 409)
    async with writing(request) as conn:
        errors = await save_settings(conn, who, now_of(request), changed)
    if errors:
        return await _general(request, who, Page(errors=errors, values=sent), 400)
    return redirect(request, "/admin/settings?saved=1")


# ------------------------------------------------------------------------------------------------ API keys


async def _keys(request: Request, who: AdminContext, page: Page, status: int = 200) -> Response:
    async with reading(request) as conn:
        keys = await ApiKeyService(now_of(request)).list(conn, who.tenant.tenant_id)
    shown = [k.as_json(who.tenant.tz) for k in keys]
    return render(request, "settings_keys.html", status, tab="keys", keys=shown, page=page,
                  scopes=SCOPES, cache_seconds=state_of(request).settings.api_key_cache_seconds)  # fmt: skip


@router.get("/settings/keys")
async def keys(request: Request, who: AdminContext = Depends(admin)) -> Response:
    done = request.query_params.get("revoked")
    return await _keys(request, who, Page(notice=f"Key {done} revoked." if done else ""))


def _shown_once(title: str, name: str, secret: str, note: str) -> dict[str, str]:
    return {"title": title, "label": f"Secret of {name}", "value": secret, "note": note}


@router.post("/settings/keys")
async def create_key(request: Request, who: AdminContext = Depends(admin)) -> Response:
    form = await form_of(request)
    values = {k: str(form.get(k) or "").strip() for k in ("name", "allow", "scope")}
    try:
        async with writing(request) as conn:
            new = await ApiKeyService(now_of(request), who.tenant.actor).create(
                conn, who.tenant.tenant_id, values["name"], allow=values["allow"] or None,
                scope=values["scope"] or "api",
            )  # fmt: skip
    except PromoflowError as exc:
        if exc.status >= 500:
            raise
        where = {"InvalidIpAllowList": "allow", "InvalidSetting": "scope"}.get(str(exc.code), "name")
        return await _keys(request, who, Page(errors={where: exc.message}, values=values), exc.status)
    secret = _shown_once(f"Key {new.key.name} created", new.key.name, new.secret,
                         "Copy it now: it is shown only this once (promoflow keeps only its hash).")  # fmt: skip
    return await _keys(request, who, Page(secret=secret))


async def _named(request: Request) -> str:
    return str((await form_of(request)).get("name") or "")


@router.post("/settings/keys/revoke")
async def revoke_key(request: Request, who: AdminContext = Depends(admin)) -> Response:
    name = await _named(request)
    async with writing(request) as conn:
        key = await ApiKeyService(now_of(request), who.tenant.actor).revoke(conn, who.tenant.tenant_id, name)
    forget(state_of(request), key.id)
    return redirect(request, "/admin/settings/keys?" + _query(revoked=key.name))


@router.post("/settings/keys/rotate")
async def rotate_key(request: Request, who: AdminContext = Depends(admin)) -> Response:
    form = await form_of(request)
    name, shown = str(form.get("name") or ""), str(form.get("prefix") or "")
    keys = ApiKeyService(now_of(request), who.tenant.actor)
    async with writing(request) as conn:
        current = await keys.active(conn, who.tenant.tenant_id, name)
        # The form showed another secret: the key was rotated since (a reload re-sending this form, another
        # admin). Rotating again would break the secret just handed out.
        new = (
            None if shown and current.prefix != shown else await keys.rotate(conn, who.tenant.tenant_id, name)
        )
    if new is None:
        stale = Page(notice=f"Key {current.name} was already rotated: its secret now starts with "
                            f"{current.prefix}…. Nothing was changed.")  # fmt: skip
        return await _keys(request, who, stale, 409)
    forget(state_of(request), new.key.id)
    secret = _shown_once(f"Key {new.key.name} rotated", new.key.name, new.secret,
                         "The old secret no longer works. Copy the new one now: it is shown only this once.")  # fmt: skip
    return await _keys(request, who, Page(secret=secret))


@router.post("/settings/keys/allow")
async def allow_key(request: Request, who: AdminContext = Depends(admin)) -> Response:
    form = await form_of(request)
    name, allow = str(form.get("name") or ""), str(form.get("allow") or "").strip()
    try:
        async with writing(request) as conn:
            key = await ApiKeyService(now_of(request), who.tenant.actor).set_allowlist(
                conn, who.tenant.tenant_id, name, allow or None
            )
    except PromoflowError as exc:
        if exc.status != 400:
            raise
        return await _keys(request, who, Page(errors={f"allow:{name}": exc.message}, values={f"allow:{name}": allow}),
                           400)  # fmt: skip
    forget(state_of(request), key.id)  # the cached context holds the old list
    shown = ", ".join(key.ip_allowlist) or "any address the tenant allows"
    return await _keys(request, who, Page(notice=f"Key {key.name} may now be used from {shown}."))


def _query(**values: str) -> str:
    from urllib.parse import urlencode

    return urlencode(values)


# --------------------------------------------------------------------------------------------------- FTP


@router.get("/settings/ftp")
async def ftp(request: Request, who: AdminContext = Depends(admin)) -> Response:
    return _ftp_page(request, who, Page())


def _ftp_page(request: Request, who: AdminContext, page: Page) -> Response:
    s = state_of(request).settings
    return render(request, "settings_ftp.html", tab="ftp", page=page, host=s.ftp_masquerade_address or s.ftp_host,
                  port=s.ftp_port, tls=bool(s.ftp_tls_cert))  # fmt: skip


@router.post("/settings/ftp/rotate")
async def rotate_ftp(request: Request, who: AdminContext = Depends(admin)) -> Response:
    async with writing(request) as conn:
        info = await rotate_ftp_password(
            conn, state_of(request).settings, who.tenant.name, now_of(request), who.tenant.actor
        )
    secret = {"title": "FTP password replaced", "label": f"FTP password of {info['ftpUser']}",
              "value": info["ftpPassword"], "note": "The old password stops working within a minute. Copy the new "
              "one now: it is shown only this once."}  # fmt: skip
    return _ftp_page(request, who, Page(secret=secret))


# ------------------------------------------------------------------------------------------------- users


async def _users(request: Request, who: AdminContext, page: Page, status: int = 200) -> Response:
    team = TeamService(now_of(request), who)
    async with reading(request) as conn:
        members, invitations = await team.members(conn), await team.pending(conn)
    return render(request, "settings_users.html", status, tab="users", members=members, invitations=invitations,
                  page=page, roles=[r.value for r in Role])  # fmt: skip


@router.get("/settings/users")
async def users(request: Request, who: AdminContext = Depends(admin)) -> Response:
    return await _users(request, who, Page(notice=request.query_params.get("done", "")[:200]))


@router.post("/settings/users")
async def create_user(request: Request, who: AdminContext = Depends(admin)) -> Response:
    form = await form_of(request)
    values = {"email": str(form.get("email") or "").strip(), "role": str(form.get("role") or "")}
    try:
        async with writing(request) as conn:
            new = await TeamService(now_of(request), who).invite(conn, values["email"], values["role"])
    except PromoflowError as exc:
        if exc.status >= 500:
            raise
        where = "role" if "role" in exc.message and "@" not in exc.message else "email"
        return await _users(request, who, Page(errors={where: exc.message}, values=values), exc.status)
    # One answer for every address: whether it has an account (in another tenant) is not this admin's to learn.
    until = local_time_text(new.expires_at, who.tenant.tz)
    secret = {"title": f"{new.email} is invited as {new.role.value}", "label": f"Invitation code for {new.email}",
              "value": new.code,
              "note": f"Give it to them over a safe channel; it is shown only this once and works once, until {until}. "
              "They sign in at /admin/login with their email and this code as the invitation code: someone new to "
              "promoflow leaves the password empty (the code becomes their password), someone who already has an "
              "account also enters their own password, which stays as it is."}  # fmt: skip
    return await _users(request, who, Page(secret=secret))


@router.post("/settings/users/withdraw")
async def withdraw(request: Request, who: AdminContext = Depends(admin)) -> Response:
    form = await form_of(request)
    async with writing(request) as conn:
        done = await TeamService(now_of(request), who).withdraw(conn, str(form.get("email") or ""))
    return redirect(request, "/admin/settings/users?" + _query(done=done))


async def _member_action(request: Request, who: AdminContext, action: str) -> Response:
    form = await form_of(request)
    email = str(form.get("email") or "")
    team = TeamService(now_of(request), who)
    try:
        async with writing(request) as conn:
            done = await team.act(conn, action, email, str(form.get("role") or ""))
    except PromoflowError as exc:
        if exc.status not in (400, 409):
            raise
        return await _users(request, who, Page(errors={f"{action}:{email}": exc.message}), exc.status)
    if isinstance(done, str):
        return redirect(request, "/admin/settings/users?" + _query(done=done))
    secret = {"title": f"New password for {done['email']}", "label": f"Password of {done['email']}",
              "value": done["password"], "note": "Their sessions have ended. Give them the password over a safe "
              "channel; it is shown only this once."}  # fmt: skip
    return await _users(request, who, Page(secret=secret))


@router.post("/settings/users/role")
async def set_role(request: Request, who: AdminContext = Depends(admin)) -> Response:
    return await _member_action(request, who, "role")


@router.post("/settings/users/disable")
async def disable(request: Request, who: AdminContext = Depends(admin)) -> Response:
    return await _member_action(request, who, "disable")


@router.post("/settings/users/enable")
async def enable(request: Request, who: AdminContext = Depends(admin)) -> Response:
    return await _member_action(request, who, "enable")


@router.post("/settings/users/reset")
async def reset(request: Request, who: AdminContext = Depends(admin)) -> Response:
    return await _member_action(request, who, "reset")


@router.post("/settings/users/remove")
async def remove(request: Request, who: AdminContext = Depends(admin)) -> Response:
    return await _member_action(request, who, "remove")
