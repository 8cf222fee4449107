"""The contact GUID cache: keys compare as Engage compares them, a created-offline note gives way to the GUID,
and a brand-new cache file opened by several processes at the same instant works in every one of them."""

from __future__ import annotations

import multiprocessing
import queue
from pathlib import Path
from typing import Any

from promoflow.client import ContactCache

GUID = "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f"


def test_keys_compare_like_engage_and_a_guid_replaces_the_offline_note(tmp_path: Path) -> None:
    with ContactCache(tmp_path / "c.sqlite3") as cache:
        cache.created_offline("email", "Alva@Example.com", "intent-1")
        assert cache.pending_create("EMAIL", "alva@example.com ") == "intent-1"
        cache.save("email", "ALVA@example.com", GUID.upper())
        assert cache.get("Email", "alva@example.com") == GUID
        assert cache.pending_create("email", "alva@example.com") is None
        cache.save("memberNumber", " 0042 ", GUID)
        assert cache.get("membernumber", "0042") == GUID and cache.get("memberNumber", "42") is None


def _open_at_once(folder: str, files: int, index: int, barrier: Any, results: Any) -> None:
    """In one process: for each of ``files`` new cache files, wait for every process, then open it."""
    failures: list[str] = []
    for number in range(files):
        barrier.wait(60)
        try:
            with ContactCache(f"{folder}/contacts-{number}.sqlite3") as cache:
                cache.save("email", f"p{index}@example.com", GUID)
                cache.created_offline("email", f"new{index}@example.com", f"intent-{index}")
        except Exception as exc:
            failures.append(f"file {number}: {type(exc).__name__}: {exc}")
    results.put((index, failures))


def test_new_cache_files_opened_by_many_processes_at_once_work_in_each(tmp_path: Path) -> None:
    # Real processes (forkserver: started from one that has imported the SDK, so they get going quickly),
    # opening each of many brand-new files at the same instant (a barrier before each).
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["promoflow.client", "tests.client.test_contact_cache"])
    processes, files = 8, 60
    barrier = ctx.Barrier(processes)
    results = ctx.Queue()
    workers = [
        ctx.Process(target=_open_at_once, args=(str(tmp_path), files, i, barrier, results))
        for i in range(processes)
    ]
    try:
        for worker in workers:
            worker.start()
        reported = []
        for _ in range(processes):
            try:
                reported.append(results.get(timeout=180))
            except queue.Empty:
                break
        for worker in workers:
            worker.join(60)
        assert sorted(reported) == [(i, []) for i in range(processes)], [r for r in reported if r[1]]
        assert [w.exitcode for w in workers] == [0] * processes
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.kill()
                worker.join(10)
            worker.close()
        results.close()
        results.join_thread()
    for number in range(files):
        with ContactCache(tmp_path / f"contacts-{number}.sqlite3") as cache:
            assert cache.count() == processes
            assert all(cache.pending_create("email", f"new{i}@example.com") for i in range(processes))
