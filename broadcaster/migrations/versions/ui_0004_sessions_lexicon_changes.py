"""server-side web sessions (user_sessions) and editors' lexicon changes waiting for approval
(lexicon_changes)

Revision ID: ui_0004
Revises: fed_0003
Create Date: 2026-12-06 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'ui_0004'
down_revision: str | None = 'fed_0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A database made before migrations existed is stamped at 0001 by create_schema after
    # create_all built every model's table, these included: skip the tables that exist.
    inspector = sa.inspect(op.get_bind())
    if not inspector.has_table('user_sessions'):
        op.create_table('user_sessions',
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('created', sa.DateTime(), nullable=False),
        sa.Column('last_seen', sa.DateTime(), nullable=False),
        sa.Column('expires', sa.DateTime(), nullable=False),
        sa.Column('address', sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id')
        )
        op.create_index(op.f('ix_user_sessions_user_id'), 'user_sessions', ['user_id'], unique=False)
    if not inspector.has_table('lexicon_changes'):
        op.create_table('lexicon_changes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('term', sa.String(length=100), nullable=False),
        sa.Column('reading', sa.String(length=500), nullable=True),
        sa.Column('entry_id', sa.Integer(), nullable=True),
        sa.Column('state', sa.String(length=20), nullable=False),
        sa.Column('proposed_by', sa.String(length=100), nullable=True),
        sa.Column('created', sa.DateTime(), nullable=False),
        sa.Column('decided_by', sa.String(length=100), nullable=True),
        sa.Column('decided_at', sa.DateTime(), nullable=True),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('id')
        )
        op.create_index(op.f('ix_lexicon_changes_state'), 'lexicon_changes', ['state'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_lexicon_changes_state'), table_name='lexicon_changes')
    op.drop_table('lexicon_changes')
    op.drop_index(op.f('ix_user_sessions_user_id'), table_name='user_sessions')
    op.drop_table('user_sessions')
