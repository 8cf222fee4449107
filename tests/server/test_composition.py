"""The server is composed explicitly from one list of features, taken by the app factory and the worker alike."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from promoflow.server.config import Settings
from promoflow.server.features import Feature, compose, default_composition
from promoflow.server.http.app import create_app


def test_a_worker_knows_its_jobs_without_importing_any_router():
    code = (
        "import json, sys\n"
        "from promoflow.server.features import default_composition\n"
        "c = default_composition()\n"
        "print(json.dumps({'jobs': sorted(c.jobs), 'appliers': sorted(k.value for k in c.appliers),\n"
        "  'api': sorted(m for m in sys.modules if m.startswith('promoflow.server') and m.endswith('.api'))}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    seen = json.loads(out.stdout)
    assert seen["api"] == []
    assert seen["jobs"] == ["bulk_assign", "file_import", "promotion_export", "report_snapshot"]
    assert seen["appliers"] == ["contacts", "promotions", "redemptions", "transactions"]


def test_the_app_mounts_every_features_routes(tmp_path):
    app = create_app(Settings(data_dir=tmp_path), composition=default_composition())
    paths = set(app.openapi()["paths"])
    assert {"/healthz", "/api/v2/contacts", "/api/v2/receipts", "/api/v2/imports"} <= paths


def test_two_features_cannot_claim_one_job_kind():
    async def run(_job):  # pragma: no cover - never called
        return {}

    with pytest.raises(ValueError, match="declared by two features"):
        compose([Feature("a", jobs={"x": run}), Feature("b", jobs={"x": run})])


def test_shutdown_runs_in_reverse_order_of_startup():
    async def s1(_st):  # pragma: no cover - never called
        pass

    async def s2(_st):  # pragma: no cover - never called
        pass

    c = compose([Feature("a", startup=[s1], shutdown=[s1]), Feature("b", startup=[s2], shutdown=[s2])])
    assert c.startup == (s1, s2)
    assert c.shutdown == (s2, s1)
