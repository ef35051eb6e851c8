"""The database: models, engine and sessions, migrations (Alembic), and the queries of files and users."""
