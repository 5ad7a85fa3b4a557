"""Learning Tangle: decentralized learning on a Tangle ledger."""

__version__ = "0.1.0"
