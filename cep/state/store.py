"""One state-store interface, two implementations (memory here; RocksDB in `rocks.py`).

The engine keeps live state as Python objects and writes *deltas* at checkpoints:
`write_batch(puts)` applies every put (value bytes) and delete (value None) atomically,
so state, input offsets and watermarks written in one batch are always consistent.
Keys and values are bytes; nothing is ever pickled.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol


class StateStore(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def write_batch(self, puts: Mapping[bytes, bytes | None]) -> None: ...

    def items(self, prefix: bytes = b"", start: bytes | None = None
              ) -> Iterator[tuple[bytes, bytes]]: ...

    def close(self) -> None: ...


class MemoryStore:
    """A dict behind the store interface: tests, notebooks and backtests."""

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self._data.get(key)

    def write_batch(self, puts: Mapping[bytes, bytes | None]) -> None:
        for k, v in puts.items():
            if v is None:
                self._data.pop(k, None)
            else:
                self._data[k] = v

    def items(self, prefix: bytes = b"", start: bytes | None = None
              ) -> Iterator[tuple[bytes, bytes]]:
        lo = prefix if start is None else max(prefix, start)
        for k in sorted(self._data):
            if k >= lo and k.startswith(prefix):
                yield k, self._data[k]

    def close(self) -> None:
        pass

    def __len__(self) -> int:
        return len(self._data)
