"""PostgreSQL as the server database: the migrations build exactly the models' schema on it too.
(Every test that uses the ``config`` fixture runs on PostgreSQL as well; see conftest.py.)"""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from support.postgres import PostgresServer, needs_postgresql

from coretrack.db import make_engine
from coretrack.models import Base
from coretrack.schema import upgrade


@needs_postgresql
def test_migrations_to_head_match_the_models_on_postgresql_and_upgrading_twice_is_harmless():
    with PostgresServer.new_database() as url:
        upgrade(url)
        upgrade(url)
        engine = make_engine(url)
        try:
            with engine.connect() as connection:
                differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        finally:
            engine.dispose()
    assert differences == []
