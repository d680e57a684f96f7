"""relay channels and stream items (broadcast kind, channel, planned end; relay schedules)

Revision ID: live_0006
Revises: core_0005
Create Date: 2027-01-10 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'live_0006'
down_revision: str | None = 'core_0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    # A database created by create_all already has every model's table and column: skip those.
    if not inspector.has_table('channels'):
        op.create_table(
            'channels',
            sa.Column('id', sa.Integer(), nullable=False),
            sa.Column('name', sa.String(length=100), nullable=False),
            sa.Column('url', sa.String(length=1000), nullable=False),
            sa.Column('enabled', sa.Boolean(), nullable=False),
            sa.Column('created_by', sa.String(length=100), nullable=True),
            sa.Column('created', sa.DateTime(), nullable=False),
            sa.PrimaryKeyConstraint('id'),
            sa.UniqueConstraint('name'),
        )
    broadcasts = {c['name'] for c in inspector.get_columns('broadcasts')}
    with op.batch_alter_table('broadcasts') as batch:
        if 'kind' not in broadcasts:
            batch.add_column(sa.Column('kind', sa.String(length=20), nullable=False, server_default='announcement'))
        if 'channel_id' not in broadcasts:
            batch.add_column(sa.Column('channel_id', sa.Integer(), nullable=True))
            batch.create_foreign_key('fk_broadcasts_channel', 'channels', ['channel_id'], ['id'], ondelete='SET NULL')
        if 'source_name' not in broadcasts:
            batch.add_column(sa.Column('source_name', sa.String(length=200), nullable=True))
        if 'end_at' not in broadcasts:
            batch.add_column(sa.Column('end_at', sa.DateTime(), nullable=True))
    schedules = {c['name'] for c in inspector.get_columns('schedules')}
    with op.batch_alter_table('schedules') as batch:
        if 'channel_id' not in schedules:
            batch.add_column(sa.Column('channel_id', sa.Integer(), nullable=True))
            batch.create_foreign_key('fk_schedules_channel', 'channels', ['channel_id'], ['id'], ondelete='SET NULL')
        if 'duration_s' not in schedules:
            batch.add_column(sa.Column('duration_s', sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('schedules') as batch:
        batch.drop_constraint('fk_schedules_channel', type_='foreignkey')
        batch.drop_column('duration_s')
        batch.drop_column('channel_id')
    with op.batch_alter_table('broadcasts') as batch:
        batch.drop_constraint('fk_broadcasts_channel', type_='foreignkey')
        batch.drop_column('end_at')
        batch.drop_column('source_name')
        batch.drop_column('channel_id')
        batch.drop_column('kind')
    op.drop_table('channels')
