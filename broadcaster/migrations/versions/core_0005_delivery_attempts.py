"""every airing of a broadcast on a cluster, interrupted or played through (delivery_attempts)

Revision ID: core_0005
Revises: voices_0002
Create Date: 2026-12-06 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'core_0005'
down_revision: str | None = 'voices_0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A database made before migrations existed is stamped at 0001 by create_schema after
    # create_all built every model's table, this one included: nothing to do then.
    if sa.inspect(op.get_bind()).has_table('delivery_attempts'):
        return
    op.create_table('delivery_attempts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('broadcast_id', sa.Integer(), nullable=False),
    sa.Column('speaker_id', sa.String(length=64), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(), nullable=True),
    sa.Column('ended_at', sa.DateTime(), nullable=True),
    sa.Column('outcome', sa.String(length=20), nullable=False),
    sa.Column('seconds_played', sa.Float(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['broadcast_id'], ['broadcasts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('broadcast_id', 'speaker_id', 'attempt', name='uq_delivery_attempt')
    )
    op.create_index('ix_delivery_attempts_broadcast_id', 'delivery_attempts', ['broadcast_id'])


def downgrade() -> None:
    op.drop_index('ix_delivery_attempts_broadcast_id', table_name='delivery_attempts')
    op.drop_table('delivery_attempts')
