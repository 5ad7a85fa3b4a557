"""Skips are for manual runs only. `make test` installs everything the suite needs and sets
LEARNING_TANGLE_NO_SKIP=1, so there a skipped test (a missing tool, say) is reported as a failure: a green
`make test` means every test ran. By hand, `pytest` shows the reasons of skips (-rs in pyproject)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("LEARNING_TANGLE_NO_SKIP") and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under LEARNING_TANGLE_NO_SKIP (make test): {reason}"
