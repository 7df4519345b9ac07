"""RocksDB state store (rocksdict in raw mode: bytes in, bytes out, never pickle)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

from rocksdict import AccessType, Options, Rdict, WriteBatch, WriteOptions

from cep.errors import CepError


class StateStoreError(CepError):
    """The state directory cannot be opened. Another process may hold its lock; or the
    files are damaged: stop the service, move the directory away, and restart to
    rebuild the state from the changelog (exactly-once mode) or from scratch."""


class RocksStore:
    def __init__(self, path: str | Path, *, read_only: bool = False) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        try:
            self._db = Rdict(
                str(self.path), options=opts,
                access_type=AccessType.read_only() if read_only else AccessType.read_write(),
            )
        except Exception as exc:  # rocksdict raises plain exceptions
            raise StateStoreError(f"cannot open state store {self.path}: {exc}") from exc
        self._sync = WriteOptions()
        self._sync.sync = True

    def get(self, key: bytes) -> bytes | None:
        v = self._db.get(key)
        return None if v is None else bytes(v)

    def write_batch(self, puts: Mapping[bytes, bytes | None]) -> None:
        wb = WriteBatch(raw_mode=True)
        for k, v in puts.items():
            if v is None:
                wb.delete(k)
            else:
                wb.put(k, v)
        self._db.write(wb, self._sync)

    def items(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        it = self._db.iter()
        it.seek(prefix)
        while it.valid():
            k = bytes(it.key())
            if not k.startswith(prefix):
                break
            yield k, bytes(it.value())
            it.next()

    def close(self) -> None:
        self._db.close()
