"""Integration tests against real services (a local kubo testnet)."""
