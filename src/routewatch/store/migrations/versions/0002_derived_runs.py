"""Record which as_of the derived visits and trips were computed for.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from routewatch.store.schema import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "derived_runs",
        sa.Column("name", sa.String(40), primary_key=True),
        sa.Column("as_of", UTCDateTime(), nullable=False),
        sa.Column("written_at", UTCDateTime(), nullable=False),
        sa.Column("visits", sa.Integer, nullable=False),
        sa.Column("trips", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("derived_runs")
