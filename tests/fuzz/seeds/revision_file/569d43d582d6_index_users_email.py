"""index users.email

Revision ID: 569d43d582d6
Revises: 836a014c0874
Create Date: 2026-11-25 15:09:38.452078

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '569d43d582d6'
down_revision: Union[str, Sequence[str], None] = '836a014c0874'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    # Built without blocking writes to users (PostgreSQL); CONCURRENTLY cannot run inside the
    # migration's transaction, hence the autocommit block. Other databases ignore the flag.
    with op.get_context().autocommit_block():
        op.create_index("ix_users_email", "users", ["email"], postgresql_concurrently=True)


def downgrade() -> None:
    """Downgrade schema."""
    with op.get_context().autocommit_block():
        op.drop_index("ix_users_email", table_name="users", postgresql_concurrently=True)
