"""Child process for the WAL crash test: appends forever, printing each acknowledged LSN.

Usage: python wal_crash_child.py DIR SEED. Prints ``A <lsn>`` after append/append_many returned (the
record is fsynced: durability "batch"), and ``T <upto>`` *before* asking for a truncation. Payloads are
derived from the LSN alone (:func:`payload_for`), so the parent can check every byte.
"""

from __future__ import annotations

import hashlib
import random
import sys
import types
from pathlib import Path

#: Source to run first in a child: registers the ``tsdb_lake`` package without executing its ``__init__``
#: (which imports the whole library, seconds of start-up), so only the WAL room and the error tree load.
LIGHT_IMPORT = (
    "import sys, types\n"
    "_pkg = types.ModuleType('tsdb_lake')\n"
    "_pkg.__path__ = [{path!r}]\n"
    "sys.modules.setdefault('tsdb_lake', _pkg)\n"
).format(path=str(Path(__file__).resolve().parents[2] / "tsdb_lake"))


def payload_for(lsn: int) -> bytes:
    """The payload of record ``lsn``: 0 bytes to ~100 KiB, deterministic."""
    r = lsn % 50
    size = 0 if r == 0 else 100_000 + lsn % 977 if r == 1 else (lsn * 7919) % 3000
    block = hashlib.sha256(lsn.to_bytes(8, "little")).digest()
    return (block * (size // 32 + 1))[:size]


def main() -> None:
    exec(LIGHT_IMPORT, {"sys": sys, "types": types})
    from tsdb_lake.wal import WAL

    directory, seed = sys.argv[1], int(sys.argv[2])
    rng = random.Random(seed)
    out = sys.stdout
    with WAL(directory, segment_bytes=64 << 10, durability="batch") as wal:
        if rng.random() < 0.5:
            for _ in wal.replay():
                pass
        while True:
            op = rng.random()
            nxt = wal.last_lsn + 1
            if op < 0.7:
                lsns = [wal.append(payload_for(nxt))]
            elif op < 0.97:
                k = rng.randint(1, 6)
                lsns = wal.append_many([payload_for(nxt + i) for i in range(k)])
            else:
                upto = max(0, wal.last_lsn - rng.randint(0, 40))
                out.write(f"T {upto}\n")
                out.flush()
                wal.truncate(upto)
                continue
            assert lsns[0] == nxt, (lsns, nxt)
            out.write("".join(f"A {lsn}\n" for lsn in lsns))
            out.flush()


if __name__ == "__main__":
    main()
