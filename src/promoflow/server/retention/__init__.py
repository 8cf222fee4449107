"""Retention: what the server deletes once it is old enough (expired idempotency keys, old per-record import
verdicts, old 'shown' events, old processed upload files), run by the workers' housekeeping."""
