"""The integrator commands: `promoflow outbox status|sync|ack` and `promoflow demo checkout` (configuration by
environment variables or options, exit statuses, output), and that they never load the server."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from promoflow.cli.main import app
from promoflow.client import IntentState, Outbox

from ._live import LiveEngage, live_engage
from .test_outbox import receipt, redemption

runner = CliRunner()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveEngage]:
    engage = live_engage(tmp_path_factory.mktemp("cli"), "--no-ftp")
    try:
        yield engage
    finally:
        engage.stop()


def test_status_counts_an_empty_outbox(tmp_path: Path) -> None:
    result = runner.invoke(app, ["outbox", "status", "--json"], env={"PROMOFLOW_OUTBOX_DIR": str(tmp_path)})
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["counts"] == dict.fromkeys(["pending", "queued", "uploaded", "done", "settled", "dead"], 0)
    assert body["attention"] == [] and body["undelivered"] == 0


def test_status_lists_what_needs_attention(tmp_path: Path) -> None:
    with Outbox(tmp_path) as outbox:
        outbox.mark_settled(outbox.add_redemption(redemption()), "expired", "the promotion expired at …")
        outbox.mark_queued(outbox.add_receipt(receipt()))
    result = runner.invoke(app, ["outbox", "status", "--outbox-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "queued: 1" in result.stdout and "settled: 1" in result.stdout
    assert "needs attention (1)" in result.stdout and "expired" in result.stdout


@pytest.mark.parametrize(
    "command", [["status"], ["sync", "--api-url", "http://127.0.0.1:9"], ["ack", "--all"]]
)
def test_a_folder_that_does_not_exist_is_an_error_not_an_empty_outbox(
    tmp_path: Path, command: list[str]
) -> None:
    missing = tmp_path / "no-such-outbox"
    result = runner.invoke(
        app, ["outbox", *command, "--outbox-dir", str(missing)], env={"PROMOFLOW_API_KEY": "k"}
    )
    assert result.exit_code == 2, result.output
    assert f"no outbox at {missing}: the folder does not exist" in result.output
    assert not missing.exists()  # nothing was created on the way


def test_a_folder_that_is_not_an_outbox_is_an_error(tmp_path: Path) -> None:
    with Outbox(tmp_path / "outbox"):
        pass
    result = runner.invoke(app, ["outbox", "status", "--outbox-dir", str(tmp_path)])  # its parent
    assert result.exit_code == 2 and "is not an outbox" in result.output
    assert not (tmp_path / "pending").exists()


def test_ack_takes_intents_off_the_attention_list(tmp_path: Path) -> None:
    with Outbox(tmp_path) as outbox:
        expired = outbox.mark_settled(outbox.add_redemption(redemption()), "expired", "the promotion expired")
        dead = outbox.mark_dead(outbox.add_receipt(receipt()), "not well-formed")
        done = outbox.mark_done(outbox.add_receipt(receipt()))
    base = ["outbox", "ack", "--outbox-dir", str(tmp_path)]

    assert runner.invoke(app, base).exit_code == 2  # neither ids nor --all
    refused = runner.invoke(app, [*base, expired.id, done.id, "no-such-id"])
    assert refused.exit_code == 2
    assert (
        f"{done.id}: done: needs no attention" in refused.output
        and "no-such-id: no such intent" in refused.output
    )
    with Outbox(tmp_path) as outbox:
        assert len(outbox.status().attention) == 2  # nothing changed

    one = runner.invoke(app, [*base, expired.id, "--json"])
    assert one.exit_code == 0, one.output
    assert json.loads(one.stdout) == {"acknowledged": [expired.id], "busy": []}
    again = runner.invoke(app, [*base, expired.id])
    assert again.exit_code == 2 and "already acknowledged" in again.output
    rest = runner.invoke(app, [*base, "--all"])
    assert rest.exit_code == 0 and dead.id in rest.stdout
    with Outbox(tmp_path) as outbox:
        status = outbox.status()
        assert status.attention == () and status.counts[IntentState.SETTLED] == 1  # the files stay


def test_ack_of_an_intent_a_sync_pass_holds_is_busy(tmp_path: Path) -> None:
    with Outbox(tmp_path) as outbox:
        intent = outbox.add_redemption(redemption())
        settled = outbox.mark_settled(intent, "notFound", "no such coupon")  # still held by this outbox
        result = runner.invoke(app, ["outbox", "ack", settled.id, "--outbox-dir", str(tmp_path)])
        assert result.exit_code == 1 and "busy" in result.output
        assert outbox.status().attention[0].id == settled.id


def test_sync_needs_an_outbox_and_a_server(tmp_path: Path) -> None:
    result = runner.invoke(app, ["outbox", "sync"], env={"PROMOFLOW_OUTBOX_DIR": "", "PROMOFLOW_API_URL": ""})
    assert result.exit_code == 2 and "PROMOFLOW_OUTBOX_DIR" in result.output
    result = runner.invoke(app, ["outbox", "sync", "--outbox-dir", str(tmp_path)])
    assert result.exit_code == 2 and "PROMOFLOW_FTP_URL" in result.output


def test_sync_settles_online_and_exits_1_while_the_server_is_unreachable(
    live: LiveEngage, tmp_path: Path, closed_port_url: str
) -> None:
    customer = live.customers([live.promotion()], 1)[0]
    with Outbox(tmp_path) as outbox:
        record = redemption(
            coupon_id=customer.assignments[0], contact_id=customer.contact_id, redeemed_on=datetime.now(UTC)
        )
        intent = outbox.add_redemption(record, group="g")
        outbox.commit("g", [intent])  # written and committed; the till died before the redeem call
    env = {"PROMOFLOW_OUTBOX_DIR": str(tmp_path), "PROMOFLOW_API_KEY": live.api_key}

    down = runner.invoke(app, ["outbox", "sync", "--json"], env={**env, "PROMOFLOW_API_URL": closed_port_url})
    assert down.exit_code == 1, down.output
    assert json.loads(down.stdout)["apiOnline"] is False and json.loads(down.stdout)["undelivered"] == 1
    said = runner.invoke(app, ["outbox", "sync"], env={**env, "PROMOFLOW_API_URL": closed_port_url})
    assert said.exit_code == 1
    assert said.stdout.splitlines()[0] == (
        "API down: 0 queued, waiting for the API; FTP not configured: nothing uploaded; "
        "0 done, 0 need attention, 1 undelivered"
    )

    # Handed over to the file path while the API was down; without an FTP URL the agent delivers it online.
    up = runner.invoke(app, ["outbox", "sync", "--json"], env={**env, "PROMOFLOW_API_URL": live.base_url})
    assert up.exit_code == 0, up.output
    report = json.loads(up.stdout)
    assert report["done"] == 1 and report["undelivered"] == 0 and report["status"]["counts"]["done"] == 1
    assert live.redemption_counts(customer.assignments) == {customer.assignments[0]: 1}
    with Outbox(tmp_path) as outbox:
        (done,) = outbox.intents(IntentState.DONE)
        assert done.id == intent.id and done.attempts == 1  # queued once on the way


def test_demo_checkout_prints_each_step(live: LiveEngage, tmp_path: Path) -> None:
    customer = live.customers([live.promotion(value="20", name="Twenty off")], 1)[0]
    env = {"PROMOFLOW_API_URL": live.base_url, "PROMOFLOW_API_KEY": live.api_key}
    args = ["demo", "checkout", "--email", customer.email, "--outbox-dir", str(tmp_path)]
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any(line.startswith("identify") and line.split()[1] == "ok" for line in lines)
    assert any(line.startswith("fetch promotions") and line.split()[2] == "ok" for line in lines)
    assert "total 497.00 → 397.60 SEK" in result.stdout  # 399 + 2 × 49, less 20 %
    assert [line.split()[1] for line in lines if line.startswith("redeem")] == ["applied"]
    assert f"  Twenty off (assignment {customer.assignments[0]})" in lines
    assert any(line.startswith("receipt ") and line.split()[1] == "applied" for line in lines)
    assert live.redemption_counts(customer.assignments) == {customer.assignments[0]: 1}

    # --outbox-dir means the same folder for the demo and for `outbox status`.
    status = runner.invoke(app, ["outbox", "status", "--json", "--outbox-dir", str(tmp_path)])
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["counts"]["done"] == 3  # the contact update, the redemption, the receipt
    assert (tmp_path / "contacts.sqlite3").exists()


def test_the_integrator_commands_load_no_server_code(tmp_path: Path) -> None:
    script = (
        "import sys, json\n"
        "from typer.testing import CliRunner\n"
        "from promoflow.cli.main import app\n"
        f"result = CliRunner().invoke(app, ['outbox', 'status', '--json', '--outbox-dir', {str(tmp_path)!r}])\n"
        "assert result.exit_code == 0, result.output\n"
        "bad = ('promoflow.server', 'fastapi', 'sqlalchemy', 'uvicorn', 'pyftpdlib', 'alembic')\n"
        "print(json.dumps([m for m in sys.modules if m.startswith(bad)]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(done.stdout) == []
