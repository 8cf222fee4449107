"""Receipts (A12, Part B §7): ingest with validation and dedupe, pending contact match, usedPromotions linking and
redeem-by-receipt, stores, returns, contact history, the assignment ledger and promotion reports."""
