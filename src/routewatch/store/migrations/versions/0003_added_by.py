"""Record where each site, route and vessel came from, so that one removed from the watchlist file leaves the store.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLES = ("sites", "routes", "vessels")


def upgrade() -> None:
    for table in TABLES:  # rows stored before this revision: from some watchlist file, or the API (not known)
        op.add_column(table, sa.Column("added_by", sa.String(40), nullable=False, server_default="watchlist"))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("added_by")
