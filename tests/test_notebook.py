"""notebooks/quickstart.ipynb runs top to bottom in a real Jupyter kernel (nbclient) without a cell error.

The kernel is the ``python3`` kernelspec installed for this interpreter into a temporary prefix (put first on
``JUPYTER_PATH``), so it runs with the same venv as the tests. Warnings of the Jupyter machinery in the test
process are not the notebook's business and are ignored here; warnings inside the kernel print to its stderr.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


@pytest.mark.filterwarnings("ignore")
def test_quickstart_notebook_executes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ipykernel  # noqa: F401  (the kernel the notebook runs in)
    import nbclient
    import nbformat

    prefix = tmp_path / "kernel"
    subprocess.run(
        [sys.executable, "-m", "ipykernel", "install", "--prefix", str(prefix), "--name", "python3"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    monkeypatch.setenv(
        "JUPYTER_PATH",
        os.pathsep.join([str(prefix / "share" / "jupyter"), os.environ.get("JUPYTER_PATH", "")]),
    )
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(str(o.get("data", {}).get("text/plain", "")) + str(o.get("text", "")) for o in outputs)
    assert "answered by tiers:" in text and "'1h'" in text  # the quantile came from a rollup tier
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the plot rendered
    spec = (prefix / "share" / "jupyter" / "kernels" / "python3" / "kernel.json").read_text()
    assert sys.executable.replace("\\", "\\\\") in spec
