"""Administration: token lookup and revocation, device keys. Every action is audited."""
