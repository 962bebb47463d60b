"""Smoke test of infra/s3_server.py: it starts, creates the bucket and the printed options work."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tsdb_lake.storage import open_storage

SCRIPT = Path(__file__).resolve().parents[2] / "infra" / "s3_server.py"


@pytest.mark.s3
def test_s3_server_script() -> None:
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--port", "0", "--bucket", "devlake"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("lake = tsdb_lake.connect("):
                break
        m = re.match(r"lake = tsdb_lake.connect\('(.+?)', storage_options=(\{.*\})\)$", lines[-1].strip())
        assert m is not None, "".join(lines)
        uri, options = m.group(1), json.loads(m.group(2))
        assert uri == "s3://devlake/lake"
        st = open_storage(uri, options)
        assert st.put_if_absent("k", b"v") is True
        assert st.put_if_absent("k", b"w") is False
        assert st.read_bytes("k") == b"v"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0
