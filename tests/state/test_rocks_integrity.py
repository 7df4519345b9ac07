"""RocksStore reports damage instead of returning part of the state (issue 14, item 3)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from cep.state.rocks import RocksStore, StateCorruptionError


def _fill(path: Path, n: int = 20_000) -> dict[bytes, bytes]:
    rnd = random.Random(7)
    data = {b"s\x00p\x001\x00k%06d" % i: rnd.randbytes(100) for i in range(n)}
    store = RocksStore(path)
    items = list(data.items())
    for i in range(0, n, 5000):
        store.write_batch(dict(items[i:i + 5000]))
    store._db.flush()  # into an .sst file (not only the WAL)
    store.close()
    return data


def _damage_sst(path: Path) -> None:
    ssts = sorted(path.glob("*.sst"))
    assert ssts, "no .sst file written"
    f = ssts[0]
    with f.open("r+b") as fh:
        fh.seek(f.stat().st_size // 3)
        fh.write(random.Random(1).randbytes(4096))


def test_intact_store_reads_everything(tmp_path: Path) -> None:
    data = _fill(tmp_path / "db")
    store = RocksStore(tmp_path / "db")
    assert store.verify() == len(data)
    assert dict(store.items(b"s\x00")) == data
    store.close()


def test_garbage_in_an_sst_is_corruption_not_a_shorter_state(tmp_path: Path) -> None:
    _fill(tmp_path / "db")
    _damage_sst(tmp_path / "db")
    try:
        store = RocksStore(tmp_path / "db")
    except StateCorruptionError:
        return  # found while opening: fine too
    with pytest.raises(StateCorruptionError, match=r"[Cc]orruption|checksum"):
        store.verify()
    with pytest.raises(StateCorruptionError):
        list(store.items(b"s\x00"))
    store.close()


def test_garbage_in_the_wal_never_reads_as_more_than_was_written(tmp_path: Path) -> None:
    """A damaged WAL tail is rolled back to a consistent point (paranoid checks, point in
    time recovery) or refused; never garbage keys."""
    path = tmp_path / "db"
    store = RocksStore(path)
    store.write_batch({b"a": b"1"})
    store.write_batch({b"b": b"2"})
    store.close()
    wal = sorted(path.glob("*.log"))[-1]
    size = wal.stat().st_size
    with wal.open("r+b") as fh:
        fh.seek(max(0, size - 20))
        fh.write(os.urandom(20))
    try:
        store = RocksStore(path)
    except StateCorruptionError:
        return
    got = dict(store.items())
    store.close()
    assert got in ({}, {b"a": b"1"}, {b"a": b"1", b"b": b"2"})
