"""The PostgreSQL engine of the store contract, on asyncpg (``engine.PostgresStore``).
Imported only when a party's store is on PostgreSQL."""
