"""delivery bodies in their own table

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-22

Each delivery's body moves from `inbox.body` to `inbox_body` (one row per inbox row, the
same id). The inbox row's status and lease change twice as the worker claims and finishes
it, and SQLite writes a changed row in full: with the body in it, each change rewrote
~15 kB and tripled what a delivery wrote to the log.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "inbox_body",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbox_body")),
    )
    op.execute("INSERT INTO inbox_body (id, body) SELECT id, body FROM inbox")
    with op.batch_alter_table("inbox", schema=None) as batch_op:
        batch_op.drop_column("body")


def downgrade() -> None:
    with op.batch_alter_table("inbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("body", sa.Text(), nullable=False, server_default=""))
    op.execute(
        "UPDATE inbox SET body = (SELECT body FROM inbox_body WHERE inbox_body.id = inbox.id)"
        " WHERE id IN (SELECT id FROM inbox_body)"
    )
    with op.batch_alter_table("inbox", schema=None) as batch_op:
        batch_op.alter_column("body", server_default=None)
    op.drop_table("inbox_body")
