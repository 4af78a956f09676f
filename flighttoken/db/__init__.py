"""PostgreSQL: the embedded development server, the connection pool and schema migrations."""
