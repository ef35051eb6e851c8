"""Alembic migrations of the server's database (SQLite and PostgreSQL); run by `database.upgrade_database`."""
