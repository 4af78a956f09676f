"""All SQL lives in this package: one module per context, plain SQL, asyncpg connections in."""
