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
    op.create_index("ix_users_email", "users", ["email"])


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index("ix_users_email", table_name="users")
