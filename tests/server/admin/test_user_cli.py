"""`promoflow user …` as an operator runs it (the real command, a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import make_tenant


def _cli(db_url: str, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "promoflow.cli", "user", *args, "--database-url", db_url,
                           "--data-dir", str(data_dir)], capture_output=True, text=True, timeout=120)  # fmt: skip


def test_user_commands(db_url: str, data_dir: Path, settings: object) -> None:
    t1, t2 = make_tenant(settings), make_tenant(settings)  # type: ignore[arg-type]
    email = f"Op-{t1['name']}@Example.com"
    r = _cli(db_url, data_dir, "create", email, "--tenant", t1["name"], "--role", "marketer", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert set(out) == {"email", "password", "tenant", "role"}
    assert out["email"] == email.lower() and out["role"] == "marketer" and len(out["password"]) >= 20
    again = json.loads(
        _cli(db_url, data_dir, "create", email, "--tenant", t2["name"], "--role", "viewer", "--json").stdout
    )
    assert again["password"] is None  # an existing user joins another tenant; their password stays
    dup = _cli(db_url, data_dir, "create", email, "--tenant", t1["name"], "--role", "viewer")
    assert dup.returncode == 2 and "already a marketer" in dup.stderr
    assert _cli(db_url, data_dir, "create", email, "--tenant", t1["name"], "--role", "boss").returncode == 2
    rows = json.loads(_cli(db_url, data_dir, "list", "--tenant", t2["name"], "--json").stdout)
    assert rows == [{"email": email.lower(), "tenant": t2["name"], "role": "viewer", "disabled": False}]
    assert (
        _cli(db_url, data_dir, "set-role", email, "--tenant", t2["name"], "--role", "admin").returncode == 0
    )
    reset = json.loads(_cli(db_url, data_dir, "reset-password", email, "--json").stdout)
    assert reset["password"] != out["password"]
    assert json.loads(_cli(db_url, data_dir, "disable", email, "--json").stdout) == {
        "email": email.lower(),
        "disabled": True,
    }
    rows = json.loads(_cli(db_url, data_dir, "list", "--json").stdout)
    mine = [r for r in rows if r["email"] == email.lower()]
    assert {(r["tenant"], r["role"], r["disabled"]) for r in mine} == {
        (t1["name"], "marketer", True),
        (t2["name"], "admin", True),
    }
