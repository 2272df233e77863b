"""Re-execute notebooks in place, top to bottom, with this environment's kernel: `make notebooks`.

The committed notebooks keep their outputs (figures show when browsing the repository),
so after changing a notebook or gradcam_utils, run this and commit the result.
"""

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def run(path):
    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    nbformat.write(notebook, path)
    return time.perf_counter() - start


if __name__ == "__main__":
    for name in sys.argv[1:]:
        print(f"{name}: {run(Path(name)):.1f} s", flush=True)
