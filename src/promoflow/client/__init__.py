"""promoflow's integrator SDK: talk to promoflow or Voyado Engage from a POS or web shop.

Needs only httpx, pydantic and lxml (``pip install promoflow``); it never imports the server.

- :class:`EngageClient` / :class:`AsyncEngageClient`: the Engage endpoints (contacts, promotions, redeem,
  assign, receipts), with retries (:class:`RetryPolicy`), idempotency keys and read-before-retry.
- The exception tree under :class:`PromoflowClientError`.
- :mod:`promoflow.client.pricing`: apply promotions to a basket with exact money.
- :class:`CheckoutFlow` / :class:`AsyncCheckoutFlow`: the whole promotions flow of a sale (identify, fetch,
  apply, contact changes, redeem, receipt), each change written to the :class:`Outbox` before the network.
- :class:`Outbox`: the write-ahead outbox of XML files; :class:`SyncAgent` delivers it (online, or over
  FTP(S)) and settles every intent by the server's verdict. :class:`ContactCache` keeps contact GUIDs.
"""

from promoflow.client._client import AsyncEngageClient, EngageClient
from promoflow.client._contacts import ContactCache
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
from promoflow.client.checkout import (
    AsyncCheckout,
    AsyncCheckoutFlow,
    Checkout,
    CheckoutFlow,
    CompletionResult,
    IdentifyResult,
    PromotionsResult,
    RedemptionResult,
    StepResult,
    StepStatus,
)
from promoflow.client.outbox import Intent, IntentKind, IntentState, Outbox, OutboxStatus, RecoveryReport
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
from promoflow.client.sync import SyncAgent, SyncReport

__all__ = [
    "AlreadyRedeemedError",
    "ApiError",
    "ApplicationStatus",
    "AsyncCheckout",
    "AsyncCheckoutFlow",
    "AsyncEngageClient",
    "AuthenticationError",
    "BadRequestError",
    "Basket",
    "BasketLine",
    "CallOutcome",
    "Checkout",
    "CheckoutFlow",
    "CompletionResult",
    "ConflictError",
    "ConnectionFailedError",
    "ContactCache",
    "ContactNotFoundError",
    "EngageClient",
    "ForbiddenError",
    "IdempotencyKeyInUseError",
    "IdempotencyKeyMismatchError",
    "IdentifyResult",
    "Intent",
    "IntentKind",
    "IntentState",
    "InvalidResponseError",
    "LineDiscount",
    "NotFoundError",
    "Outbox",
    "OutboxStatus",
    "PricedBasket",
    "PricedLine",
    "PromoflowClientError",
    "PromotionApplication",
    "PromotionExpiredError",
    "PromotionNotFoundError",
    "PromotionsResult",
    "RateLimitedError",
    "RecoveryReport",
    "RedemptionResult",
    "RequestTimeoutError",
    "RetryPolicy",
    "ServerError",
    "StepResult",
    "StepStatus",
    "SyncAgent",
    "SyncReport",
    "TransportError",
    "UnprocessableError",
    "apply_promotions",
]
