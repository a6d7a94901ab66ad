"""add users.display_name

Revision ID: 836a014c0874
Revises: d2ca87e6a2c7
Create Date: 2026-11-25 15:09:38.091904

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '836a014c0874'
down_revision: Union[str, Sequence[str], None] = 'd2ca87e6a2c7'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    # Expand: nullable, so old code that never writes it keeps working; and full_name becomes
    # nullable, so that builds which no longer write it can insert rows before it is dropped.
    op.add_column("users", sa.Column("display_name", sa.String(length=200), nullable=True))
    with op.batch_alter_table("users") as batch_op:
        batch_op.alter_column("full_name", existing_type=sa.String(length=200), nullable=True)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("users") as batch_op:
        batch_op.alter_column("full_name", existing_type=sa.String(length=200), nullable=False)
        batch_op.drop_column("display_name")
