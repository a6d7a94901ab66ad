"""drop users.full_name

Revision ID: 172e330d1de0
Revises: 3f55b760f0a3
Create Date: 2026-11-25 15:09:47.232323

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '172e330d1de0'
down_revision: Union[str, Sequence[str], None] = '3f55b760f0a3'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


# shiftguard: dropping a column is a contract step. Builds made at or after the merge revision
# 3f55b760f0a3 read and write display_name only, so they tolerate it; older builds (including the
# dual-writing build made at 836a014c0874, which still writes full_name) break.
shiftguard_phase = "contract"
shiftguard_requires_app_at_least = "3f55b760f0a3"

def upgrade() -> None:
    """Upgrade schema."""
    # Contract: only once nothing that reads or writes full_name can run (shiftguard gate contract).
    with op.batch_alter_table("users") as batch_op:
        batch_op.drop_column("full_name")


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table("users") as batch_op:
        batch_op.add_column(sa.Column("full_name", sa.String(length=200), nullable=True))
