"""File imports record one entry per import (actor: the file), not one per line; the operator's CLI records tenant
settings, keys, the FTP password and users under ``cli (<OS user>)``; user changes are recorded in every tenant
the user belongs to."""

from __future__ import annotations

import json
import os
from typing import Any

from typer.testing import CliRunner

from promoflow.wire.xml import CONTACT_IMPORT_DIR, ContactRecord, Verdict, write_contacts
from tests.server._support import new_contact

from ._support import changes_of, entries


def cli(api: Any, *args: str) -> Any:
    from promoflow.cli.main import app

    where = ("--database-url", api.settings.resolved_database_url(), "--data-dir", str(api.settings.data_dir))
    unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("PROMOFLOW_")}
    result = CliRunner().invoke(app, [*args, *where], env=unset, catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return result


def test_a_contact_file_is_one_entry_naming_the_file(transfer: Any) -> None:
    api = transfer.api
    known = new_contact(api, email="known@example.com", firstName="Old")
    n = len(changes_of(api))
    name = "20260310120000_1_contacts.xml"
    data = write_contacts([
        ContactRecord(attributes={"email": "new@example.com", "firstName": "Ada"}),
        ContactRecord(contact_id=known["id"], attributes={"lastName": "Lovelace"}),
        ContactRecord(attributes={"email": "not an e-mail"}),
    ])  # fmt: skip
    summary, _ = transfer.process(CONTACT_IMPORT_DIR, name, data)
    assert summary.counts[Verdict.APPLIED] == 2
    (e,) = changes_of(api, n)  # no contact.create / contact.update per line
    import_id = transfer.imports()[0]["id"]
    assert (e["action"], e["object_type"], e["object_id"]) == ("import.apply", "import", import_id)
    assert (e["actor_kind"], e["actor"], e["actor_ref"]) == ("file", name, import_id)
    assert e["after"]["kind"] == "contacts" and e["after"]["status"] == "done"
    assert e["after"]["counts"] == {"applied": 2, "invalid": 1}
    # the same content again is a duplicate: nothing applied, nothing recorded
    transfer.process(CONTACT_IMPORT_DIR, "20260310120001_2_contacts.xml", data)
    assert len(changes_of(api, n)) == 1


def test_tenant_settings_keys_and_ftp_from_the_cli(api: Any) -> None:
    name, tid = api.tenant["name"], api.tenant["tenantId"]
    n = len(changes_of(api))
    cli(
        api,
        "tenant",
        "set",
        name,
        "reactivationLimit=5",
        "timeZone=Europe/Helsinki",
        "customKey=memberNumber",
    )
    cli(api, "tenant", "set", name, "reactivationLimit=5")  # no change: nothing recorded
    key = cli(api, "tenant", "rotate-key", name).stdout.strip()
    cli(api, "tenant", "rotate-ftp-password", name)
    settings, rotated, created, ftp = changes_of(api, n)
    for e in (settings, rotated, created, ftp):
        assert e["actor_kind"] == "system" and e["actor"].startswith("cli")
    assert (settings["action"], settings["object_type"], settings["object_id"]) == (
        "settings.update",
        "tenant",
        tid,
    )
    assert settings["before"] == {"timeZone": "Europe/Stockholm", "reactivationLimit": 3}
    assert settings["after"] == {"timeZone": "Europe/Helsinki", "reactivationLimit": 5}
    assert rotated["action"] == "api_key.rotate" and rotated["after"] == {"revoked": True}
    assert rotated["before"]["prefix"] == api.tenant["apiKey"][:10]
    assert created["action"] == "api_key.create" and created["after"]["prefix"] == key[:10]
    assert (ftp["action"], ftp["object_type"], ftp["object_id"]) == ("ftp.rotate", "ftp_account", name)
    assert "password" in ftp["after"] and api.tenant["ftpPassword"] not in json.dumps(ftp["after"])


def test_users_from_the_cli_are_recorded_in_each_of_their_tenants(api: Any) -> None:
    other = api.new_tenant()
    url = api.settings.resolved_database_url()
    mine, theirs = len(changes_of(api)), len(entries(url, other["tenantId"]))
    email = "ops@example.com"
    cli(api, "user", "create", email, "--tenant", api.tenant["name"], "--role", "viewer")
    cli(api, "user", "create", email, "--tenant", other["name"], "--role", "admin")
    cli(api, "user", "set-role", email, "--tenant", api.tenant["name"], "--role", "marketer")
    cli(api, "user", "disable", email)
    cli(api, "user", "enable", email)
    cli(api, "user", "reset-password", email)
    here = changes_of(api, mine)
    there = entries(url, other["tenantId"])[theirs:]
    assert [e["action"] for e in here] == [
        "user.create",
        "user.role",
        "user.disable",
        "user.enable",
        "user.reset",
    ]
    assert [e["action"] for e in there] == ["user.create", "user.disable", "user.enable", "user.reset"]
    create, role, disable, _, reset = here
    assert create["after"] == {"email": email, "role": "viewer", "newUser": True}
    assert there[0]["after"] == {"email": email, "role": "admin", "newUser": False}
    assert role["before"] == {"email": email, "role": "viewer"} and role["after"] == {"role": "marketer"}
    assert disable["after"] == {"disabled": True}
    assert reset["after"] == {"password": "(new, shown once)"}
    assert all(e["object_type"] == "user" and e["actor"].startswith("cli") for e in here + there)
