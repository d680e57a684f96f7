"""lexicon entries per engine and voice, with a phonetic hint: lexicon.engine, .voice, .hint (the
unique term becomes unique per term, engine and voice) and the same fields on lexicon_changes

Revision ID: lex_0007
Revises: field_0006
Create Date: 2026-12-10 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'lex_0007'
down_revision: str | None = 'field_0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite's unique constraint on lexicon.term has no name (0001 made it unnamed): batch mode finds
# it under the name this convention gives it. PostgreSQL reports its own name (lexicon_term_key).
_CONVENTION = {'uq': 'uq_%(table_name)s_%(column_0_name)s'}


def _scope_columns() -> list[sa.Column]:
    return [
        sa.Column('engine', sa.String(length=50), server_default='', nullable=False),
        sa.Column('voice', sa.String(length=100), server_default='', nullable=False),
        sa.Column('hint', sa.String(length=200), nullable=True),
    ]


def upgrade() -> None:
    # A database made before migrations existed is stamped at 0001 by create_schema after
    # create_all built every model's table, these columns included: skip what exists.
    inspector = sa.inspect(op.get_bind())
    if 'engine' not in {c['name'] for c in inspector.get_columns('lexicon')}:
        old = next(
            (u for u in inspector.get_unique_constraints('lexicon') if u['column_names'] == ['term']), None
        )
        with op.batch_alter_table('lexicon', naming_convention=_CONVENTION) as batch_op:
            for column in _scope_columns():
                batch_op.add_column(column)
            if old is not None:
                batch_op.drop_constraint(old['name'] or 'uq_lexicon_term', type_='unique')
            batch_op.create_unique_constraint('uq_lexicon_scope', ['term', 'engine', 'voice'])
    if 'engine' not in {c['name'] for c in inspector.get_columns('lexicon_changes')}:
        with op.batch_alter_table('lexicon_changes') as batch_op:
            for column in _scope_columns():
                batch_op.add_column(column)


def downgrade() -> None:
    # Entries scoped to one engine have no place in the old table: they are dropped.
    op.execute("DELETE FROM lexicon WHERE engine <> '' OR voice <> ''")
    with op.batch_alter_table('lexicon_changes') as batch_op:
        for name in ('hint', 'voice', 'engine'):
            batch_op.drop_column(name)
    with op.batch_alter_table('lexicon') as batch_op:
        batch_op.drop_constraint('uq_lexicon_scope', type_='unique')
        for name in ('hint', 'voice', 'engine'):
            batch_op.drop_column(name)
        batch_op.create_unique_constraint('uq_lexicon_term', ['term'])
