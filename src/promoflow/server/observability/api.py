"""GET /metrics: the Prometheus exposition of this run (every API process's counters in multiprocess mode)."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from ..exceptions import NotFoundError, UnauthorizedError
from ..http.edge import state_of
from .collect import STATE_KEY, Observability

router = APIRouter(tags=["health"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus metrics. With PROMOFLOW_METRICS_TOKEN set, only for `Authorization: Bearer <token>`."""
    st = state_of(request)
    obs: Observability | None = st.extras.get(STATE_KEY)
    if obs is None:
        raise NotFoundError("metrics are turned off (PROMOFLOW_METRICS_ENABLED=false)")
    token = st.settings.metrics_token
    if token:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise UnauthorizedError(
                "the metrics need the header Authorization: Bearer <PROMOFLOW_METRICS_TOKEN>"
            )
    return Response(await obs.exposition(), media_type=CONTENT_TYPE_LATEST)
