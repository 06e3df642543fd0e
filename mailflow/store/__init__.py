"""Storage: the SQLAlchemy models, the engine and its one transaction
helper, and the Alembic migrations that create every table."""
