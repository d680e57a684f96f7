"""federation tables

Revision ID: fed_0003
Revises: live_0006
Create Date: 2026-12-06 04:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'fed_0003'
down_revision: str | None = 'live_0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Tables made by create_all before this revision was stamped (see voices_0002) are kept.
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if 'fed_bulletins' not in existing:
        op.create_table('fed_bulletins',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('broadcast_id', sa.Integer(), nullable=True),
        sa.Column('inbox_id', sa.Integer(), nullable=True),
        sa.Column('tier', sa.String(length=20), nullable=False),
        sa.Column('title', sa.String(length=300), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('format', sa.String(length=10), nullable=False),
        sa.Column('audio_key', sa.String(length=64), nullable=True),
        sa.Column('audio_sha256', sa.String(length=64), nullable=True),
        sa.Column('audio_size', sa.Integer(), nullable=True),
        sa.Column('duration_s', sa.Float(), nullable=True),
        sa.Column('repeat', sa.Integer(), nullable=False),
        sa.Column('targets', sa.JSON(), nullable=False),
        sa.Column('units', sa.JSON(), nullable=False),
        sa.Column('at', sa.DateTime(), nullable=True),
        sa.Column('valid_until', sa.DateTime(), nullable=True),
        sa.Column('state', sa.String(length=20), nullable=False),
        sa.Column('sender', sa.String(length=200), nullable=False),
        sa.Column('created', sa.DateTime(), nullable=False),
        sa.Column('sent_at', sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint('id')
        )
        with op.batch_alter_table('fed_bulletins', schema=None) as batch_op:
            batch_op.create_index(batch_op.f('ix_fed_bulletins_broadcast_id'), ['broadcast_id'], unique=False)
            batch_op.create_index(batch_op.f('ix_fed_bulletins_inbox_id'), ['inbox_id'], unique=False)
    if 'fed_clusters' not in existing:
        op.create_table('fed_clusters',
        sa.Column('unit', sa.String(length=200), nullable=False),
        sa.Column('speaker', sa.String(length=64), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('zone', sa.String(length=64), nullable=True),
        sa.Column('online', sa.Boolean(), nullable=False),
        sa.Column('faults', sa.JSON(), nullable=False),
        sa.Column('last_health', sa.DateTime(), nullable=True),
        sa.Column('reported_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('unit', 'speaker')
        )
    if 'fed_inbox' not in existing:
        op.create_table('fed_inbox',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('origin', sa.String(length=100), nullable=False),
        sa.Column('ref', sa.String(length=300), nullable=False),
        sa.Column('tier', sa.String(length=20), nullable=False),
        sa.Column('title', sa.String(length=300), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('format', sa.String(length=10), nullable=False),
        sa.Column('audio_key', sa.String(length=64), nullable=True),
        sa.Column('audio_sha256', sa.String(length=64), nullable=True),
        sa.Column('duration_s', sa.Float(), nullable=True),
        sa.Column('repeat', sa.Integer(), nullable=False),
        sa.Column('targets', sa.JSON(), nullable=False),
        sa.Column('route', sa.JSON(), nullable=False),
        sa.Column('at', sa.DateTime(), nullable=True),
        sa.Column('valid_until', sa.DateTime(), nullable=True),
        sa.Column('sender', sa.String(length=200), nullable=False),
        sa.Column('state', sa.String(length=20), nullable=False),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('broadcast_id', sa.Integer(), nullable=True),
        sa.Column('forwarded_id', sa.Integer(), nullable=True),
        sa.Column('decided_by', sa.String(length=100), nullable=True),
        sa.Column('hold_until', sa.DateTime(), nullable=True),
        sa.Column('clash', sa.JSON(), nullable=False),
        sa.Column('reported', sa.JSON(), nullable=False),
        sa.Column('final', sa.Boolean(), nullable=False),
        sa.Column('seen', sa.Boolean(), nullable=False),
        sa.Column('data', sa.JSON(), nullable=False),
        sa.Column('received', sa.DateTime(), nullable=False),
        sa.Column('updated', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('origin', 'ref', name='uq_fed_inbox_origin_ref')
        )
        with op.batch_alter_table('fed_inbox', schema=None) as batch_op:
            batch_op.create_index(batch_op.f('ix_fed_inbox_broadcast_id'), ['broadcast_id'], unique=False)
    if 'fed_link' not in existing:
        op.create_table('fed_link',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('url', sa.String(length=500), nullable=False),
        sa.Column('token', sa.String(length=300), nullable=False),
        sa.Column('unit', sa.String(length=64), nullable=False),
        sa.Column('link_id', sa.String(length=64), nullable=False),
        sa.Column('cursor', sa.Integer(), nullable=False),
        sa.Column('next_report_seq', sa.Integer(), nullable=False),
        sa.Column('dropped_reports', sa.Integer(), nullable=False),
        sa.Column('state', sa.String(length=20), nullable=False),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('last_ok', sa.DateTime(), nullable=True),
        sa.Column('created', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id')
        )
    if 'fed_minutes' not in existing:
        op.create_table('fed_minutes',
        sa.Column('unit', sa.String(length=200), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('speaker', sa.String(length=64), nullable=False),
        sa.Column('broadcasts', sa.Integer(), nullable=False),
        sa.Column('seconds', sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint('unit', 'day', 'speaker')
        )
    if 'fed_nonces' not in existing:
        op.create_table('fed_nonces',
        sa.Column('unit', sa.String(length=64), nullable=False),
        sa.Column('nonce', sa.String(length=64), nullable=False),
        sa.Column('ts', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('unit', 'nonce')
        )
        with op.batch_alter_table('fed_nonces', schema=None) as batch_op:
            batch_op.create_index('ix_fed_nonces_ts', ['ts'], unique=False)
    if 'fed_outbox' not in existing:
        op.create_table('fed_outbox',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('unit', sa.String(length=64), nullable=False),
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=20), nullable=False),
        sa.Column('bulletin_id', sa.Integer(), nullable=False),
        sa.Column('data', sa.JSON(), nullable=False),
        sa.Column('created', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('unit', 'seq', name='uq_fed_outbox_unit_seq')
        )
        with op.batch_alter_table('fed_outbox', schema=None) as batch_op:
            batch_op.create_index(batch_op.f('ix_fed_outbox_bulletin_id'), ['bulletin_id'], unique=False)
    if 'fed_reports' not in existing:
        op.create_table('fed_reports',
        sa.Column('seq', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('kind', sa.String(length=20), nullable=False),
        sa.Column('coalesce_key', sa.String(length=250), nullable=True),
        sa.Column('data', sa.JSON(), nullable=False),
        sa.Column('created', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('seq')
        )
        with op.batch_alter_table('fed_reports', schema=None) as batch_op:
            batch_op.create_index(batch_op.f('ix_fed_reports_coalesce_key'), ['coalesce_key'], unique=False)
    if 'fed_unit_bulletins' not in existing:
        op.create_table('fed_unit_bulletins',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('bulletin_id', sa.Integer(), nullable=False),
        sa.Column('unit', sa.String(length=200), nullable=False),
        sa.Column('state', sa.String(length=30), nullable=False),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('updated', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('bulletin_id', 'unit', name='uq_fed_unit_bulletin')
        )
        with op.batch_alter_table('fed_unit_bulletins', schema=None) as batch_op:
            batch_op.create_index(batch_op.f('ix_fed_unit_bulletins_bulletin_id'), ['bulletin_id'], unique=False)
    if 'fed_unit_deliveries' not in existing:
        op.create_table('fed_unit_deliveries',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('bulletin_id', sa.Integer(), nullable=False),
        sa.Column('unit', sa.String(length=200), nullable=False),
        sa.Column('speaker', sa.String(length=64), nullable=False),
        sa.Column('state', sa.String(length=20), nullable=False),
        sa.Column('started_at', sa.DateTime(), nullable=True),
        sa.Column('finished_at', sa.DateTime(), nullable=True),
        sa.Column('seconds_played', sa.Float(), nullable=True),
        sa.Column('rms_dbfs', sa.Float(), nullable=True),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('updated', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('bulletin_id', 'unit', 'speaker', name='uq_fed_unit_delivery')
        )
        with op.batch_alter_table('fed_unit_deliveries', schema=None) as batch_op:
            batch_op.create_index(batch_op.f('ix_fed_unit_deliveries_bulletin_id'), ['bulletin_id'], unique=False)
    if 'fed_units' not in existing:
        op.create_table('fed_units',
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('display_name', sa.String(length=200), nullable=False),
        sa.Column('key_hex', sa.String(length=64), nullable=False),
        sa.Column('revoked', sa.Boolean(), nullable=False),
        sa.Column('created', sa.DateTime(), nullable=False),
        sa.Column('last_seen', sa.DateTime(), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('link_id', sa.String(length=64), nullable=True),
        sa.Column('last_report_seq', sa.Integer(), nullable=False),
        sa.Column('acked_seq', sa.Integer(), nullable=False),
        sa.Column('next_seq', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('name')
        )


def downgrade() -> None:
    op.drop_table('fed_units')
    with op.batch_alter_table('fed_unit_deliveries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_fed_unit_deliveries_bulletin_id'))

    op.drop_table('fed_unit_deliveries')
    with op.batch_alter_table('fed_unit_bulletins', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_fed_unit_bulletins_bulletin_id'))

    op.drop_table('fed_unit_bulletins')
    with op.batch_alter_table('fed_reports', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_fed_reports_coalesce_key'))

    op.drop_table('fed_reports')
    with op.batch_alter_table('fed_outbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_fed_outbox_bulletin_id'))

    op.drop_table('fed_outbox')
    with op.batch_alter_table('fed_nonces', schema=None) as batch_op:
        batch_op.drop_index('ix_fed_nonces_ts')

    op.drop_table('fed_nonces')
    op.drop_table('fed_minutes')
    op.drop_table('fed_link')
    with op.batch_alter_table('fed_inbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_fed_inbox_broadcast_id'))

    op.drop_table('fed_inbox')
    op.drop_table('fed_clusters')
    with op.batch_alter_table('fed_bulletins', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_fed_bulletins_inbox_id'))
        batch_op.drop_index(batch_op.f('ix_fed_bulletins_broadcast_id'))

    op.drop_table('fed_bulletins')
