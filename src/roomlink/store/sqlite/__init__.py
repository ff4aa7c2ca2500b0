"""The SQLite engine of the store contract (``engine.SqliteStore``)."""
