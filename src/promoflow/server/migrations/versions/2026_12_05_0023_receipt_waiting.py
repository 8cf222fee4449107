"""receipt_waiting(): a contact create's question to the pending receipts in one statement (issue 15 §3)

Revision ID: 0023
Revises: 0016
Create Date: 2026-12-05

PostgreSQL only. A new contact must not miss a receipt kept pending for one of its keys at the same moment
(`receipt.locks.lock_keys`): the create takes the keys' advisory locks and only then looks for pending receipts,
so whichever of the two comes second sees what the first committed. In one SQL statement that is impossible
— a statement reads with the snapshot taken when it started, before it waited for the lock — so the contact's
quick create was a pipelined transaction (BEGIN, the locks, the insert, its audit entry, COMMIT). A VOLATILE function takes a fresh snapshot for each query it
runs: this one takes the locks (sorted, like every other holder), then asks, and the create is one statement.
The keys (``[[key type, value], …]``) and the lock ids come as JSON, as SQLite's question takes the keys.
"""

from __future__ import annotations

from alembic import op

revision = "0023"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
CREATE FUNCTION receipt_waiting(p_tenant uuid, p_contact_type text, p_keys jsonb, p_locks jsonb) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  PERFORM pg_advisory_xact_lock(k::bigint) FROM jsonb_array_elements_text(p_locks) AS k ORDER BY k::bigint;
  RETURN EXISTS (
    SELECT 1 FROM receipt_pending JOIN receipt ON receipt.id = receipt_pending.receipt_id
    WHERE receipt_pending.tenant_id = p_tenant
      AND (receipt_pending.key_type, receipt_pending.key_value) IN (
        SELECT k ->> 0, k ->> 1 FROM jsonb_array_elements(p_keys) AS k)
      AND (receipt_pending.contact_type IS NULL OR receipt_pending.contact_type = p_contact_type));
END
$$
"""
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP FUNCTION receipt_waiting(uuid, text, jsonb, jsonb)")
