"""DCS messages: signed webhook events to each airline's departure control system, delivered at
least once from a PostgreSQL outbox written in the same transaction as the change they report."""
