"""Fixtures of the report tests: one pipeline run per test session, on a fresh random corpus."""

import numpy as np
import pytest

from report_corpus import ReportRun, make_report_run


@pytest.fixture(scope="session")
def report_run(tmp_path_factory: pytest.TempPathFactory) -> ReportRun:
    seed = int(np.random.SeedSequence().entropy % 2**32)
    print(f"report corpus seed {seed}")
    return make_report_run(tmp_path_factory.mktemp("report"), seed)
