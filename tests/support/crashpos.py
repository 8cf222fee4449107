"""A till that the crash-safety test kills with SIGKILL at random points: ``python crashpos.py PLAN.json``.

It restarts the way a real POS would (``CheckoutFlow.recover()`` first), then runs the plan's checkouts. Before
it takes each decision it appends a line to its journal (flushed: the kernel keeps it across a SIGKILL), and it
prints a line per step, by which the test picks the moment to kill it:

- ``begin`` — a checkout starts;
- ``paying`` — the payment went through and ``complete()`` is called (assignments used, receipt id);
- ``paid`` — ``complete()`` returned;
- ``unpaid`` — the payment failed: the sale ends without redemptions or receipt.

``python crashpos.py --zygote`` imports the SDK once and then forks one till per line read from stdin (a
plan's path): the child prints ``pid <pid>`` first, then its step lines; the zygote prints ``exit <status>``
when the child is gone (killed or not). A hundred runs then cost a hundred forks, not a hundred interpreter
start-ups. Only ``promoflow.client`` is imported.
"""

from __future__ import annotations

import json
import os
import random
import sys
from decimal import Decimal
from typing import Any

from promoflow.client import Basket, BasketLine, CheckoutFlow, ContactCache, EngageClient, Outbox, RetryPolicy


def say(line: str) -> None:
    """One line on stdout in one write(2): a pipe write this small is atomic, so a SIGKILL can never leave
    half a line for the next one to run into (``print`` may write the text and the newline separately)."""
    sys.stdout.flush()
    os.write(sys.stdout.fileno(), f"{line}\n".encode())


def main(plan_path: str) -> None:
    with open(plan_path) as f:
        plan: dict[str, Any] = json.load(f)
    rng = random.Random(plan["seed"])
    policy = RetryPolicy.interactive(base_delay=0.01, max_delay=0.05, total_budget=2.0)
    journal = open(plan["journal"], "a", buffering=1)  # noqa: SIM115 - lives as long as the process

    def note(event: str, **data: Any) -> None:
        journal.write(json.dumps({"event": event, **data}) + "\n")
        journal.flush()

    def step(name: str) -> None:
        say(name)

    with (
        EngageClient(plan["api"], plan["key"], retry=policy, timeout=5.0) as client,
        Outbox(plan["outbox"], sender=plan["sender"]) as outbox,
        ContactCache(plan["cache"]) as cache,
    ):
        flow = CheckoutFlow(client, outbox, store_external_id="S-CRASH", contacts=cache, retry=policy)
        step("started")
        recovered = flow.recover()
        step(f"recovered {len(recovered)}")
        for customer in plan["customers"]:
            checkout_id = customer["checkout"]
            note("begin", checkout=checkout_id)
            step("begin")
            sale = flow.start(checkout_id)
            sale.identify(email=customer["email"])
            step("identified")
            sale.fetch_promotions()
            step("fetched")
            priced = sale.apply(
                Basket((BasketLine("SKU", Decimal(2), Decimal("120.00")), BasketLine("BAG", 1, 5)), "SEK")
            )
            step("priced")
            if rng.random() < plan["payRate"]:
                used = [a.assignment_id for a in priced.applied]
                note("paying", checkout=checkout_id, assignments=used)
                step("paying")
                done = sale.complete()
                note("paid", checkout=checkout_id, statuses=[r.status.value for r in done.results])
                step("paid")
            else:
                note("unpaid", checkout=checkout_id)
                step("unpaid")
    say("finished")


def zygote() -> None:
    for line in sys.stdin:
        plan = line.strip()
        if not plan:
            continue
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:  # the till
            code = 0
            try:
                say(f"pid {os.getpid()}")
                main(plan)
            except BaseException as exc:
                say(f"error {exc!r}")
                code = 1
            finally:
                sys.stdout.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        say(f"exit {os.waitstatus_to_exitcode(status)}")


if __name__ == "__main__":
    if sys.argv[1] == "--zygote":
        zygote()
    else:
        main(sys.argv[1])
