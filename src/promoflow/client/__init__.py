"""promoflow's integrator SDK: talk to promoflow or Voyado Engage from a POS or web shop.

Needs only httpx, pydantic and lxml (``pip install promoflow``); it never imports the server.

- :class:`EngageClient` / :class:`AsyncEngageClient`: the Engage endpoints (contacts, promotions, redeem,
  assign, receipts), with retries (:class:`RetryPolicy`), idempotency keys and read-before-retry.
- The exception tree under :class:`PromoflowClientError`.
- :mod:`promoflow.client.pricing`: apply promotions to a basket with exact money.
"""

from promoflow.client._client import AsyncEngageClient, EngageClient
from promoflow.client._engine import CallOutcome
from promoflow.client._exceptions import (
    AlreadyRedeemedError,
    ApiError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ConnectionFailedError,
    ContactNotFoundError,
    ForbiddenError,
    IdempotencyKeyInUseError,
    IdempotencyKeyMismatchError,
    InvalidResponseError,
    NotFoundError,
    PromoflowClientError,
    PromotionExpiredError,
    PromotionNotFoundError,
    RateLimitedError,
    RequestTimeoutError,
    ServerError,
    TransportError,
    UnprocessableError,
)
from promoflow.client._retry import RetryPolicy
from promoflow.client.pricing import (
    ApplicationStatus,
    Basket,
    BasketLine,
    LineDiscount,
    PricedBasket,
    PricedLine,
    PromotionApplication,
    apply_promotions,
)

__all__ = [
    "AlreadyRedeemedError",
    "ApiError",
    "ApplicationStatus",
    "AsyncEngageClient",
    "AuthenticationError",
    "BadRequestError",
    "Basket",
    "BasketLine",
    "CallOutcome",
    "ConflictError",
    "ConnectionFailedError",
    "ContactNotFoundError",
    "EngageClient",
    "ForbiddenError",
    "IdempotencyKeyInUseError",
    "IdempotencyKeyMismatchError",
    "InvalidResponseError",
    "LineDiscount",
    "NotFoundError",
    "PricedBasket",
    "PricedLine",
    "PromoflowClientError",
    "PromotionApplication",
    "PromotionExpiredError",
    "PromotionNotFoundError",
    "RateLimitedError",
    "RequestTimeoutError",
    "RetryPolicy",
    "ServerError",
    "TransportError",
    "UnprocessableError",
    "apply_promotions",
]
