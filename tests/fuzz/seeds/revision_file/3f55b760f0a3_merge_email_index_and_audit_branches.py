"""merge email index and audit branches

Revision ID: 3f55b760f0a3
Revises: 448b4040d6f2, 569d43d582d6
Create Date: 2026-11-25 15:09:45.932063

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '3f55b760f0a3'
down_revision: Union[str, Sequence[str], None] = ('448b4040d6f2', '569d43d582d6')
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    pass


def downgrade() -> None:
    """Downgrade schema."""
    pass
