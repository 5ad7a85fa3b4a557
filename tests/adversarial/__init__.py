"""Adversarial suite: hostile peers against real `tangle peer` processes on real kubo nodes (issue 14)."""
