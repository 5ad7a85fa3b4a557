"""Integration tests against real services (a local js-ipfs testnet)."""
