"""Touchpoint devices and staff keys: who is calling, and what that kind of key may do."""
