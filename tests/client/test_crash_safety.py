"""Crash safety: tills (tests/support/crashpos.py) killed with SIGKILL at random points, then restarted and synced.

Four tills (lanes) run side by side against one real `promoflow serve`, each with its own outbox, contact cache
and journal; each lane runs its till 25 times, and every run is killed after a randomly chosen line of its
output (most of them), so kills land anywhere: in identify, while the outbox writes a sale, between the
commit and the redeem call, during the receipt, during the restart's own recovery. After a last clean restart
and a sync pass, the journal decides what must be true in the server's database:

- a checkout journalled ``paid`` (``complete()`` returned): each used promotion redeemed exactly once and its
  receipt stored exactly once;
- ``paying`` but not ``paid`` (killed inside ``complete()``): all of that or none of it, never a part;
- never ``paying`` (unpaid, or killed before the payment): none of its promotions redeemed, no receipt.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from promoflow.client import EngageClient, IntentState, Outbox, RetryPolicy, SyncAgent
from tests.support.children import tied

from ._live import Customer, LiveEngage, live_engage

LANES = 4
RUNS_PER_LANE = 25
CHECKOUTS_PER_RUN = 3
SEED = 4242
SCRIPT = Path(__file__).resolve().parents[1] / "support" / "crashpos.py"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveEngage]:
    engage = live_engage(tmp_path_factory.mktemp("crash"), "--no-ftp")
    try:
        yield engage
    finally:
        engage.stop()


@dataclass
class Lane:
    number: int
    directory: Path
    customers: dict[str, Customer] = field(default_factory=dict)
    """By checkout id."""
    runs: int = 0
    kills: int = 0

    @property
    def journal(self) -> Path:
        return self.directory / "journal.jsonl"

    @property
    def outbox(self) -> Path:
        return self.directory / "outbox"

    def plan(self, live: LiveEngage, checkouts: list[tuple[str, Customer]], seed: int) -> Path:
        path = self.directory / f"plan-{self.runs}.json"
        body: dict[str, Any] = {
            "api": live.base_url,
            "key": live.api_key,
            "outbox": str(self.outbox),
            "cache": str(self.directory / "contacts.sqlite3"),
            "journal": str(self.journal),
            "sender": f"lane{self.number}",
            "seed": seed,
            "payRate": 0.7,
            "customers": [
                {"checkout": checkout, "email": c.email, "contactId": c.contact_id}
                for checkout, c in checkouts
            ],
        }
        path.write_text(json.dumps(body))
        return path


class Till:
    """A zygote (crashpos.py --zygote) that forks one till per plan; a till is SIGKILLed by its pid."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            tied([sys.executable, str(SCRIPT), "--zygote"]),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

    def close(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        self.proc.wait(60)
        self.proc.stdout.close()

    def run(self, plan: Path, kill_after_line: int | None, kill_delay: float = 0.0) -> bool:
        """Run a till on ``plan``; SIGKILL it ``kill_delay`` seconds after its ``kill_after_line``-th step
        line (sooner if it ends by itself). True when it was killed."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        # A watchdog, so that a till that never ends fails the test instead of hanging it.
        watchdog = threading.Timer(120, self.proc.kill)
        watchdog.start()
        try:
            return self._run(plan, kill_after_line, kill_delay)
        finally:
            watchdog.cancel()

    def _run(self, plan: Path, kill_after_line: int | None, kill_delay: float) -> bool:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{plan}\n")
        self.proc.stdin.flush()
        first = self.proc.stdout.readline()
        assert first.startswith("pid "), first
        pid = int(first.split()[1])
        killed = False
        output: list[str] = []
        for line in self.proc.stdout:
            if line.startswith("exit "):
                code = int(line.split()[1])
                assert killed or code == 0, output
                assert not killed or code in (0, -signal.SIGKILL), (code, output)
                return killed and code == -signal.SIGKILL
            assert "exit " not in line, f"a till's line ran into the zygote's: {line!r}"
            output.append(line)
            if len(output) == kill_after_line and not killed:
                if kill_delay:
                    # The kill instant: a random moment after the chosen step, not a synchronisation.
                    time.sleep(kill_delay)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                killed = True
        raise AssertionError(f"the zygote ended: {output}")


def drive_lane(live: LiveEngage, lane: Lane, customers: list[Customer], seed: int) -> None:
    rng = random.Random(seed)
    till = Till()
    try:
        for start in range(0, len(customers), CHECKOUTS_PER_RUN):
            chunk = [(str(uuid.uuid4()), c) for c in customers[start : start + CHECKOUTS_PER_RUN]]
            lane.customers.update(chunk)
            plan = lane.plan(live, chunk, rng.randrange(1 << 30))
            lines = 3 + 6 * len(chunk)  # started, recovered, 6 per checkout at most, finished
            lane.kills += till.run(plan, rng.randint(1, lines), rng.uniform(0, 0.03))
            lane.runs += 1
        lane.runs += 1  # a last, clean restart: its recovery settles what the last kill left
        assert not till.run(lane.plan(live, [], 0), None)
    finally:
        till.close()


def journal_of(lane: Lane) -> dict[str, dict[str, Any]]:
    events: dict[str, dict[str, Any]] = defaultdict(dict)
    for line in lane.journal.read_text().splitlines():
        entry = json.loads(line)
        events[entry["checkout"]][entry["event"]] = entry
    return events


@pytest.mark.slow
def test_tills_killed_at_random_points_apply_every_paid_checkout_exactly_once(
    live: LiveEngage, tmp_path: Path
) -> None:
    promotions = [live.promotion(value="15"), live.promotion(value_type="MONEY", value="30")]
    everyone = live.customers(promotions, LANES * RUNS_PER_LANE * CHECKOUTS_PER_RUN)
    lanes = [Lane(n, tmp_path / f"lane{n}") for n in range(LANES)]
    for lane in lanes:
        lane.directory.mkdir()
    share = len(everyone) // LANES
    with ThreadPoolExecutor(LANES) as pool:
        list(
            pool.map(
                lambda lane: drive_lane(
                    live, lane, everyone[lane.number * share : (lane.number + 1) * share], SEED + lane.number
                ),
                lanes,
            )
        )

    # After each lane's last clean restart, a sync pass delivers anything left queued.
    policy = RetryPolicy.interactive(base_delay=0.01, max_delay=0.05)
    with EngageClient(live.base_url, live.api_key, retry=policy) as client:
        for lane in lanes:
            with Outbox(lane.outbox) as outbox:
                report = SyncAgent(outbox, client, retry=policy).run_once()
                assert report.finished, report.to_json()
                status = outbox.status()
                assert status.undelivered == 0 and not status.attention, status.to_json()
                assert status.counts[IntentState.PENDING] == 0

    runs = sum(lane.runs for lane in lanes)
    kills = sum(lane.kills for lane in lanes)
    assert runs >= 100 and kills >= 80, (runs, kills)

    paid: dict[str, list[str]] = {}
    interrupted: dict[str, list[str]] = {}
    untouched: list[str] = []
    for lane in lanes:
        for checkout, events in journal_of(lane).items():
            if "paid" in events:
                paid[checkout] = events["paying"]["assignments"]
            elif "paying" in events:
                interrupted[checkout] = events["paying"]["assignments"]
            else:
                untouched.append(checkout)
    assert paid and interrupted and untouched, (len(paid), len(interrupted), len(untouched))

    customer_of = {checkout: c for lane in lanes for checkout, c in lane.customers.items()}
    all_assignments = [a for c in everyone for a in c.assignments]
    redemptions = live.redemption_counts(all_assignments)
    receipts = live.receipt_counts(customer_of)

    for checkout, used in paid.items():
        assert used, checkout
        assert [redemptions[a] for a in used] == [1] * len(used), checkout
        assert receipts[checkout] == 1, checkout
        assert all(redemptions[a] == 0 for a in customer_of[checkout].assignments if a not in used)
    whole = 0
    for checkout, used in interrupted.items():
        state = {redemptions[a] for a in used} | {receipts[checkout]}
        assert state in ({0}, {1}), f"checkout {checkout} was applied in part: {state}"
        whole += state == {1}
    for checkout in untouched:
        assert receipts[checkout] == 0, checkout
        assert all(redemptions[a] == 0 for a in customer_of[checkout].assignments), checkout
    # Customers whose checkout never reached a run (a run killed before their turn) were not touched either.
    reached = set(customer_of)
    assert sum(redemptions.values()) == sum(
        redemptions[a] for c in reached for a in customer_of[c].assignments
    )
    print(f"runs={runs} kills={kills} paid={len(paid)} interrupted={len(interrupted)} (applied whole: {whole}) "
          f"untouched={len(untouched)}")  # fmt: skip
