"""Scoring tests run models on one OpenMP/BLAS thread: for the tiny batches here,
starting threads costs more than the work (badly so on a busy machine). A row's score
does not depend on the thread count; `test_scoring_model.py` checks that once with
every core."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from threadpoolctl import threadpool_limits


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    with threadpool_limits(limits=1):
        yield
