"""outbox ordering keys: replies of one thread are sent in order

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The rule of `storage.outbox.ordering_key` as it stood at this revision.
_THREAD_KINDS = ("ThreadReply", "ApprovalRequest", "ApprovalDecided")


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("ordering_key", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )
        batch_op.create_index("ix_outbox_ordering", ["ordering_key", "status", "id"], unique=False)
    # Effects still waiting keep their order across the upgrade.
    outbox = sa.table(
        "outbox",
        sa.column("id", sa.Integer()),
        sa.column("kind", sa.String()),
        sa.column("payload", sa.JSON()),
        sa.column("status", sa.String()),
        sa.column("ordering_key", sa.String()),
    )
    bind = op.get_bind()
    waiting = bind.execute(
        sa.select(outbox.c.id, outbox.c.kind, outbox.c.payload).where(
            outbox.c.status == "pending",
            outbox.c.kind.in_([*_THREAD_KINDS, "RefreshBoard"]),
        )
    ).all()
    for row_id, kind, payload in waiting:
        release_id = (payload or {}).get("release_id")
        if release_id is None:
            continue
        prefix = "board" if kind == "RefreshBoard" else "thread"
        bind.execute(
            sa.update(outbox)
            .where(outbox.c.id == row_id)
            .values(ordering_key=f"{prefix}:{release_id}")
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_ordering")
        batch_op.drop_column("ordering_key")
