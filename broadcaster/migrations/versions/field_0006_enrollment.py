"""enrollment: one-time download links (enroll_links) and the registry revision with its triggers

Revision ID: field_0006
Revises: ui_0004
Create Date: 2026-12-08 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from broadcaster.models import registry_revision_ddl

revision: str = 'field_0006'
down_revision: str | None = 'ui_0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    # A database made before migrations existed is stamped at 0001 by create_schema after
    # create_all built every model's table, these included: only the triggers are (re)made then.
    if not inspector.has_table('registry_revision'):
        op.create_table('registry_revision',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('revision', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('id')
        )
    if not inspector.has_table('enroll_links'):
        op.create_table('enroll_links',
        sa.Column('token_sha256', sa.String(length=64), nullable=False),
        sa.Column('speaker_id', sa.String(length=64), nullable=False),
        sa.Column('created', sa.DateTime(), nullable=False),
        sa.Column('expires', sa.DateTime(), nullable=False),
        sa.Column('used', sa.DateTime(), nullable=True),
        sa.Column('created_by', sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(['speaker_id'], ['speakers.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('token_sha256')
        )
        op.create_index('ix_enroll_links_speaker_id', 'enroll_links', ['speaker_id'])
    for statement in registry_revision_ddl(bind.dialect.name):
        op.execute(statement)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == 'sqlite':
        for name in ('insert', 'update', 'delete'):
            op.execute(f'DROP TRIGGER IF EXISTS registry_revision_{name}')
    elif bind.dialect.name == 'postgresql':
        op.execute('DROP TRIGGER IF EXISTS registry_revision_bump ON speakers')
        op.execute('DROP FUNCTION IF EXISTS registry_revision_bump()')
    op.drop_index('ix_enroll_links_speaker_id', table_name='enroll_links')
    op.drop_table('enroll_links')
    op.drop_table('registry_revision')
