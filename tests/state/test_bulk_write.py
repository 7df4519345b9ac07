"""RocksStore writes a large batch as one ingested table file (cep/state/rocks.py): the
same atomic, durable result as a WriteBatch, in any mix with small batches."""

from __future__ import annotations

from pathlib import Path

import pytest

from cep.state import rocks
from cep.state.rocks import RocksStore


@pytest.fixture
def bulk_from_3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rocks, "BULK_PUTS", 3)


@pytest.mark.usefixtures("bulk_from_3")
def test_a_bulk_batch_overwrites_deletes_and_survives_a_reopen(tmp_path: Path) -> None:
    store = RocksStore(tmp_path / "db")
    store.write_batch({b"a": b"1", b"b": b"2"})  # WriteBatch (WAL, memtable)
    files_before = set((tmp_path / "db").glob("*.sst"))
    store.write_batch({b"a": b"10", b"b": None, b"c": b"3", b"e": None})  # ingested
    assert set((tmp_path / "db").glob("*.sst")) - files_before  # a table file came in
    assert list(store.items()) == [(b"a", b"10"), (b"c", b"3")]
    store.write_batch({b"a": b"11"})  # a WriteBatch after it wins over it
    store.write_batch({b"c": None, b"d": b"4", b"f": b"5"})
    assert list(store.items()) == [(b"a", b"11"), (b"d", b"4"), (b"f", b"5")]
    assert list((tmp_path / "db" / "bulk").iterdir()) == []  # nothing left behind
    store.write_batch({b"d": None, b"x": None, b"y": None})  # deletes only, ingested
    assert list(store.items()) == [(b"a", b"11"), (b"f", b"5")]
    store.write_batch({b"d": b"4"})
    store.close()
    store = RocksStore(tmp_path / "db")
    assert list(store.items()) == [(b"a", b"11"), (b"d", b"4"), (b"f", b"5")]
    assert store.verify() == 3
    store.close()


def test_a_failed_bulk_write_changes_nothing(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    store = RocksStore(tmp_path / "db")
    store.write_batch({b"a": b"1"})
    monkeypatch.setattr(rocks, "BULK_PUTS", 2)
    monkeypatch.setattr(rocks, "IngestExternalFileOptions", None)  # fails before ingesting
    with pytest.raises(rocks.StateStoreError, match="writing"):
        store.write_batch({b"a": b"2", b"b": b"3"})
    assert list(store.items()) == [(b"a", b"1")]
    assert list((tmp_path / "db" / "bulk").iterdir()) == []
    store.close()


def test_a_table_file_left_by_a_crash_is_removed_at_open(tmp_path: Path) -> None:
    store = RocksStore(tmp_path / "db")
    store.write_batch({b"a": b"1"})
    store.close()
    (tmp_path / "db" / "bulk").mkdir()
    (tmp_path / "db" / "bulk" / "123-0.sst").write_bytes(b"half written")
    store = RocksStore(tmp_path / "db")
    assert list((tmp_path / "db" / "bulk").iterdir()) == []
    assert list(store.items()) == [(b"a", b"1")]
    store.close()
