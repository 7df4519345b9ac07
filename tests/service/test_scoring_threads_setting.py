"""The service's `scoring_threads` setting reaches the engine (cep/scoring/threads.py)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.build import engine_config
from service.config import Settings, load_settings


def test_default_is_one_thread() -> None:
    assert engine_config(Settings()).scoring_threads == 1


def test_environment_sets_it_and_zero_means_the_libraries_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CEP_SCORING_THREADS", "4")
    assert engine_config(load_settings()).scoring_threads == 4
    monkeypatch.setenv("CEP_SCORING_THREADS", "0")
    assert engine_config(load_settings()).scoring_threads is None


def test_negative_is_refused() -> None:
    with pytest.raises(ValidationError, match="scoring_threads"):
        Settings(scoring_threads=-1)
