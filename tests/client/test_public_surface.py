"""The SDK's public surface is deliberate: pinned here, and free of server dependencies."""

from __future__ import annotations

import json
import subprocess
import sys

import promoflow.client

EXPECTED = {
    # clients and call details
    "EngageClient",
    "AsyncEngageClient",
    "CallOutcome",
    "RetryPolicy",
    # exceptions
    "PromoflowClientError",
    "TransportError",
    "ConnectionFailedError",
    "RequestTimeoutError",
    "InvalidResponseError",
    "ApiError",
    "BadRequestError",
    "AuthenticationError",
    "ForbiddenError",
    "NotFoundError",
    "ContactNotFoundError",
    "PromotionNotFoundError",
    "ConflictError",
    "AlreadyRedeemedError",
    "PromotionExpiredError",
    "IdempotencyKeyInUseError",
    "UnprocessableError",
    "IdempotencyKeyMismatchError",
    "RateLimitedError",
    "ServerError",
    # pricing
    "apply_promotions",
    "ApplicationStatus",
    "Basket",
    "BasketLine",
    "LineDiscount",
    "PricedBasket",
    "PricedLine",
    "PromotionApplication",
    # the checkout flow and its step results
    "CheckoutFlow",
    "AsyncCheckoutFlow",
    "Checkout",
    "AsyncCheckout",
    "StepStatus",
    "StepResult",
    "IdentifyResult",
    "PromotionsResult",
    "RedemptionResult",
    "CompletionResult",
    "ContactCache",
    # the outbox and the sync agent
    "Outbox",
    "Intent",
    "IntentKind",
    "IntentState",
    "OutboxStatus",
    "RecoveryReport",
    "SyncAgent",
    "SyncReport",
}


def test_all_is_pinned() -> None:
    assert set(promoflow.client.__all__) == EXPECTED
    assert len(promoflow.client.__all__) == len(EXPECTED)


def test_every_exported_name_exists_and_is_documented() -> None:
    for name in promoflow.client.__all__:
        member = getattr(promoflow.client, name)
        assert member.__doc__, name


def test_exported_members_claim_the_public_module() -> None:
    # Like httpx: nothing private leaks through names that users would import from elsewhere.
    for name in promoflow.client.__all__:
        assert getattr(promoflow.client, name).__module__.startswith("promoflow.client"), name


def test_exceptions_share_one_base() -> None:
    for name in promoflow.client.__all__:
        member = getattr(promoflow.client, name)
        if isinstance(member, type) and issubclass(member, Exception):
            assert issubclass(member, promoflow.client.PromoflowClientError), name


FORBIDDEN = ["fastapi", "sqlalchemy", "starlette", "uvicorn", "pyftpdlib", "alembic", "promoflow.server"]


def test_importing_the_sdk_pulls_in_no_server_code() -> None:
    script = (
        "import json, sys\n"
        "import promoflow.client, promoflow.client.pricing, promoflow.client.outbox\n"
        "import promoflow.client.checkout, promoflow.client.sync\n"
        f"forbidden = {FORBIDDEN!r}\n"
        "loaded = [m for m in sys.modules if any(m == f or m.startswith(f + '.') for f in forbidden)]\n"
        "print(json.dumps(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(result.stdout) == []
