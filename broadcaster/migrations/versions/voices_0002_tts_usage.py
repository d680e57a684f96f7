"""characters sent to the cloud speech engines per day (tts_usage)

Revision ID: voices_0002
Revises: 0001
Create Date: 2026-12-01 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'voices_0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A database made before migrations existed is stamped at 0001 by create_schema after
    # create_all built every model's table, this one included: nothing to do then.
    if sa.inspect(op.get_bind()).has_table('tts_usage'):
        return
    op.create_table('tts_usage',
    sa.Column('engine', sa.String(length=50), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('chars', sa.Integer(), nullable=False),
    sa.Column('requests', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('engine', 'day')
    )


def downgrade() -> None:
    op.drop_table('tts_usage')
