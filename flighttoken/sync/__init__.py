"""Keeping several instances' in-memory galleries in step through PostgreSQL LISTEN/NOTIFY."""
