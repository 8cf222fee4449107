"""One applier per file kind, each registered with ``@applier(kind)``; importing this package registers them."""

from . import contacts, promotions, redemptions, transactions  # noqa: F401
