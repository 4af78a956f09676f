"""Privacy mechanics around biometric data: template vault (envelope encryption), consent, purge."""
