"""What an FTP user cannot do: see another tenant's tree, leave its own, follow symlinks, upload anything but a
conventionally named file into an import folder, upload too much, or hurt the server (or other tenants) with a
hostile XML file."""

from __future__ import annotations

import ftplib
import io
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from promoflow.wire.xml import (
    IMPORT_RESULTS_DIR,
    REDEMPTION_IMPORT_DIR,
    TRANSACTION_IMPORT_DIR,
    Redemption,
    write_redemptions,
)
from tests.conftest import START
from tests.server._support import assign, new_contact, new_promotion, snapshot

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
  <!ENTITY lol "lol">
  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<promotionRedemptions><redemption><couponId>&lol9;</couponId></redemption></promotionRedemptions>
"""
QUADRATIC = (
    b'<?xml version="1.0"?>\n<!DOCTYPE q [<!ENTITY a "'
    + b"x" * 50_000
    + b'">]>\n<promotionRedemptions>'
    + b"<redemption><couponId>"
    + b"&a;" * 20_000
    + b"</couponId></redemption></promotionRedemptions>"
)
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<promotionRedemptions><redemption><couponId>&xxe;</couponId></redemption></promotionRedemptions>
"""
EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE promotionRedemptions SYSTEM "http://127.0.0.1:9/evil.dtd">
<promotionRedemptions/>
"""
NOT_WELL_FORMED = b"<promotionRedemptions><redemption><couponId>x</redemption>"


def _refused(call) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(ftplib.error_perm) as err:
        call()
    return str(err.value)


def test_a_tenant_sees_only_its_own_tree(transfer):
    other = transfer.api.new_tenant()
    marker = transfer.root(other) / "integration/importResults/secret.result.xml"
    marker.write_bytes(b"<secret/>")
    ftp = transfer.ftp()
    try:
        assert ftp.nlst("/") == ["integration"] or ftp.nlst("/") == ["/integration"]
        for path in (
            f"/../{other['tenantId']}",
            f"../../{other['tenantId']}/integration",
            "/../../..",
            "/..",
        ):
            try:
                ftp.cwd(path)
            except ftplib.error_perm:
                continue
            assert ftp.pwd() == "/"  # '..' above the root stays at the root
        assert other["tenantId"] not in " ".join(ftp.nlst("/"))
        buf = io.BytesIO()
        for path in (
            f"/../{other['tenantId']}/integration/importResults/secret.result.xml",
            "/../../../../etc/passwd",
        ):
            _refused(lambda p=path: ftp.retrbinary(f"RETR {p}", buf.write))
        assert buf.getvalue() == b""
    finally:
        ftp.quit()
    # and the other tenant's password does not open this tree
    client = ftplib.FTP()
    client.connect("127.0.0.1", transfer.port)
    try:
        with pytest.raises(ftplib.error_perm):
            client.login(transfer.api.tenant["ftpUser"], other["ftpPassword"])
    finally:
        client.close()


def test_symlinks_are_neither_listed_nor_followed(transfer):
    other = transfer.api.new_tenant()
    results = transfer.root() / "integration/importResults"
    os.symlink(transfer.root(other), results / "other-tenant")
    os.symlink("/etc/passwd", results / "passwd.result.xml")
    ftp = transfer.ftp()
    try:
        assert ftp.nlst(IMPORT_RESULTS_DIR) == []
        _refused(lambda: ftp.cwd(f"{IMPORT_RESULTS_DIR}/other-tenant"))
        _refused(lambda: ftp.retrbinary(f"RETR {IMPORT_RESULTS_DIR}/passwd.result.xml", lambda b: None))
        _refused(lambda: ftp.nlst(f"{IMPORT_RESULTS_DIR}/other-tenant/integration"))
    finally:
        ftp.quit()


def test_uploads_only_into_import_folders_under_conventional_names(transfer):
    ftp = transfer.ftp()
    data = io.BytesIO(b"<promotionRedemptions/>")
    try:
        _refused(
            lambda: ftp.storbinary("STOR /integration/importResults/20260310120000_1_redemptions.xml", data)
        )
        _refused(lambda: ftp.storbinary("STOR /evil.xml", data))
        _refused(lambda: ftp.storbinary("STOR ../../../tmp/evil_20260310120000_1_redemptions.xml", data))
        reason = _refused(lambda: ftp.storbinary(f"STOR {REDEMPTION_IMPORT_DIR}/orders.xml", data))
        assert "YYYYMMDDHHmmss" in reason
        reason = _refused(
            lambda: ftp.storbinary(f"STOR {TRANSACTION_IMPORT_DIR}/20260310120000_1_redemptions.xml", data)
        )
        assert "transactions" in reason
        _refused(
            lambda: ftp.storbinary(f"STOR {REDEMPTION_IMPORT_DIR}/20261399120000_1_redemptions.xml", data)
        )
        for command in ("MKD /integration/x", "RNFR /integration/processed", "SITE CHMOD 777 /integration",
                        f"APPE {REDEMPTION_IMPORT_DIR}/20260310120000_1_redemptions.xml"):  # fmt: skip
            with pytest.raises(ftplib.error_perm):
                ftp.sendcmd(command)
        _refused(lambda: ftp.delete("/integration/promotionImport"))
    finally:
        ftp.quit()
    assert not Path("/tmp/evil_20260310120000_1_redemptions.xml").exists()
    # refused names get a result file that says why (in upload order, by the queue)
    transfer.run_jobs()
    summary, records = transfer.result("orders.xml")
    assert summary.status == "rejected" and "YYYYMMDDHHmmss" in (summary.reason or "") and records == []
    summary, _ = transfer.result("20261399120000_1_redemptions.xml")
    assert summary.status == "rejected" and "timestamp" in (summary.reason or "")
    assert {i["status"] for i in transfer.imports()} == {"rejected"}


def test_oversized_upload_is_aborted_and_deleted(api, tmp_path):
    from promoflow.server.transfer.ftp import FtpServer

    settings = api.settings.model_copy(
        update={"ftp_port": 0, "ftp_max_upload_bytes": 64 * 1024, "ftp_auth_failed_delay_seconds": 0.05}
    )
    server = FtpServer(settings, clock=api.clock).start()
    try:
        ftp = ftplib.FTP()
        ftp.connect("127.0.0.1", server.address[1])
        ftp.login(api.tenant["ftpUser"], api.tenant["ftpPassword"])
        big = io.BytesIO(b"<promotionRedemptions>" + b" " * (1024 * 1024) + b"</promotionRedemptions>")
        with pytest.raises(ftplib.Error) as err:
            ftp.storbinary(f"STOR {REDEMPTION_IMPORT_DIR}/20260310120000_1_redemptions.xml", big)
        assert "552" in str(err.value) or "426" in str(err.value)
        ftp.close()
    finally:
        server.stop()
    tenant_id = uuid.UUID(api.tenant["tenantId"])
    staging = api.settings.data_dir / "transfer/staging" / str(tenant_id)
    assert list(staging.iterdir()) == []
    inbox = api.settings.data_dir / "transfer/inbox" / str(tenant_id)
    assert not inbox.exists() or list(inbox.iterdir()) == []
    r = api.get("/api/v2/imports")
    assert r.json()["totalCount"] == 0


@pytest.mark.parametrize(
    ("attack", "reason"),
    [
        (BILLION_LAUGHS, "DOCTYPE"),
        (QUADRATIC, "DOCTYPE"),
        (EXTERNAL_ENTITY, "DOCTYPE"),
        (EXTERNAL_DTD, "DOCTYPE"),
        (NOT_WELL_FORMED, "not well-formed"),
    ],
    ids=["billion-laughs", "quadratic-blowup", "external-entity", "external-dtd", "not-well-formed"],
)
def test_hostile_xml_is_refused_without_harm_and_other_files_flow(transfer, attack, reason):
    api = transfer.api
    other = api.new_tenant()
    c = new_contact(api, headers=api.as_tenant(other))
    promo = new_promotion(api, headers=api.as_tenant(other))
    coupon = assign(api, c["id"], promo["id"], headers=api.as_tenant(other))["id"]
    before = snapshot(api.settings.resolved_database_url(), api.tenant["tenantId"])
    bad = "20260310120000_1_redemptions.xml"
    good = "20260310120001_1_redemptions.xml"
    assert transfer.upload(REDEMPTION_IMPORT_DIR, bad, attack).startswith("226")
    # the next file of the same tenant, and another tenant's file, are processed all the same
    follow = write_redemptions([Redemption(coupon_id=str(uuid.uuid4()), redeemed_on=START)])
    assert transfer.upload(REDEMPTION_IMPORT_DIR, good, follow).startswith("226")
    theirs = write_redemptions([Redemption(coupon_id=coupon, redemption_channel="POS", redeemed_on=START)])
    assert transfer.upload(REDEMPTION_IMPORT_DIR, good, theirs, tenant=other).startswith("226")
    transfer.run_jobs()
    summary, records = transfer.result(bad)
    assert summary.status == "rejected" and reason in (summary.reason or "") and records == []
    assert "root:" not in (summary.reason or "")  # nothing of /etc/passwd leaks into a result
    after = snapshot(api.settings.resolved_database_url(), api.tenant["tenantId"])
    assert {k: v for k, v in after.items() if k != "job"} == {k: v for k, v in before.items() if k != "job"}
    assert transfer.result(good)[0].status == "processed"
    summary, records = transfer.result(good, tenant=other)
    assert [r.verdict.value for r in records] == ["applied"]


def test_tls_when_a_certificate_is_configured(api, tmp_path):
    from promoflow.server.transfer.ftp import FtpServer

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "2", "-subj", "/CN=127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    settings = api.settings.model_copy(
        update={
            "ftp_port": 0,
            "ftp_tls_cert": cert,
            "ftp_tls_key": key,
            "ftp_auth_failed_delay_seconds": 0.05,
        }
    )
    server = FtpServer(settings, clock=api.clock).start()
    try:
        port = server.address[1]
        plain = ftplib.FTP()
        plain.connect("127.0.0.1", port)
        with pytest.raises(ftplib.error_perm):
            plain.login(api.tenant["ftpUser"], api.tenant["ftpPassword"])  # TLS is required
        plain.close()
        import ssl

        ctx = ssl.create_default_context(cafile=str(cert))
        ctx.check_hostname = False
        tls = ftplib.FTP_TLS(context=ctx)
        tls.connect("127.0.0.1", port)
        tls.login(api.tenant["ftpUser"], api.tenant["ftpPassword"])
        tls.prot_p()
        data = write_redemptions([Redemption(coupon_id=str(uuid.uuid4()), redeemed_on=START)])
        reply = tls.storbinary(
            f"STOR {REDEMPTION_IMPORT_DIR}/20260310120000_1_redemptions.xml", io.BytesIO(data)
        )
        assert reply.startswith("226")
        tls.quit()
    finally:
        server.stop()
    assert api.get("/api/v2/imports").json()["totalCount"] == 1
    api.run_jobs()  # leave no queued job behind in the shared test database


def test_rotated_password_replaces_the_old_one(transfer):
    import json as _json

    from typer.testing import CliRunner

    from promoflow.cli.main import app

    api = transfer.api
    name = api.tenant["name"]
    opened = ftplib.FTP()
    opened.connect("127.0.0.1", transfer.port)
    assert opened.login(name, api.tenant["ftpPassword"]).startswith("230")
    unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("PROMOFLOW_")}
    where = ["--database-url", api.settings.resolved_database_url(), "--data-dir", str(api.settings.data_dir)]
    ran = CliRunner().invoke(app, ["tenant", "rotate-ftp-password", name, "--json", *where], env=unset,
                             catch_exceptions=False)  # fmt: skip
    assert ran.exit_code == 0, ran.stderr
    info = _json.loads(ran.stdout)
    assert info["ftpUser"] == name and info["ftpPassword"] != api.tenant["ftpPassword"]
    fresh = ftplib.FTP()
    fresh.connect("127.0.0.1", transfer.port)
    assert fresh.login(name, info["ftpPassword"]).startswith("230")
    fresh.quit()
    # A session that logged in with the old password before the change is held to the new one too: its next
    # command is refused and the connection closed (here at once: the new login replaced the cached one).
    with pytest.raises(ftplib.error_perm, match=r"^530 The FTP password was replaced"):
        opened.storbinary(
            f"STOR /redemptionImport/{datetime.now(UTC):%Y%m%d%H%M%S}_1_redemptions.xml", io.BytesIO(b"<x/>")
        )
    with pytest.raises((EOFError, OSError)):
        opened.voidcmd("NOOP")
    opened.close()
    stale = ftplib.FTP()
    stale.connect("127.0.0.1", transfer.port)
    try:
        with pytest.raises(ftplib.error_perm):
            stale.login(name, api.tenant["ftpPassword"])
    finally:
        stale.close()


def test_an_ftps_setting_that_cannot_work_stops_the_server_saying_why(tmp_path):
    """A key or "TLS required" without a certificate would quietly serve plain FTP; a key of another
    certificate, swapped files or a missing file would fail with OpenSSL's words. Each stops `promoflow ftp` with
    one line naming the setting or the files."""
    pairs = {}
    for name in ("one", "two"):
        cert, key = tmp_path / f"{name}-cert.pem", tmp_path / f"{name}-key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
             "-days", "2", "-subj", "/CN=127.0.0.1"],
            check=True, capture_output=True,
        )  # fmt: skip
        pairs[name] = (str(cert), str(key))
    (one_cert, one_key), (_, two_key) = pairs["one"], pairs["two"]
    cases = [
        ({"PROMOFLOW_FTP_TLS_REQUIRED": "true"}, 2, "PROMOFLOW_FTP_TLS_REQUIRED is set but PROMOFLOW_FTP_TLS_CERT is not"),
        ({"PROMOFLOW_FTP_TLS_KEY": one_key}, 2, "PROMOFLOW_FTP_TLS_KEY is set but PROMOFLOW_FTP_TLS_CERT is not"),
        ({"PROMOFLOW_FTP_TLS_CERT": one_cert, "PROMOFLOW_FTP_TLS_KEY": two_key}, 1,
         f"the key {two_key} is not the key of the certificate {one_cert}"),
        ({"PROMOFLOW_FTP_TLS_CERT": one_key, "PROMOFLOW_FTP_TLS_KEY": one_cert}, 1, "are they swapped?"),
        ({"PROMOFLOW_FTP_TLS_CERT": str(tmp_path / "missing.pem")}, 1, "which is not a file"),
    ]  # fmt: skip
    base = {k: v for k, v in os.environ.items() if not k.startswith("PROMOFLOW_")}
    db = f"sqlite:///{tmp_path / 'p.sqlite3'}"
    for env, code, words in cases:
        done = subprocess.run(
            [sys.executable, "-m", "promoflow.cli", "ftp", "--port", "0", "--database-url", db,
             "--data-dir", str(tmp_path / "data")],
            env={**base, **env}, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert done.returncode == code, (env, done.stderr)
        errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and words in errors[0], (env, done.stderr)
        assert "Traceback" not in done.stderr
