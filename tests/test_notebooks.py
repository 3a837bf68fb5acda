"""The Colab notebooks: stored without outputs, and each runs top to bottom with the small settings.

Execution uses nbclient with a kernel of this interpreter (a kernelspec written to a temp dir), in a
temp working directory, with TALKINGMEM_RUNLOCAL=1 (the notebooks' CPU settings: tiny configs, a few
steps, 32 px). The synthetic datasets are generated once per session and shared by the notebooks.
TALKINGMEM_NOTEBOOK_OUT=DIR also writes the executed notebooks (with outputs) to DIR, for review.
"""
import json
import os
import pathlib
import sys

import nbformat
import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
NAMES = ("mcnet_quickstart.ipynb", "mcnet_voxceleb_tpu.ipynb", "memface_quickstart.ipynb")
CELL_TIMEOUT_S = 600  # one cell may train with a cold compile cache on 2 busy cores
# Files each notebook must have written under its working directory: proof it ran to the end.
PRODUCTS = {
    "mcnet_quickstart.ipynb": ("workdirs/notebooks/mcnet_quickstart/astronaut.mp4",
                               "workdirs/notebooks/mcnet_quickstart/memory.png"),
    "mcnet_voxceleb_tpu.ipynb": ("workdirs/mcnet_vox/eval/reconstruction/report.json",),
    "memface_quickstart.ipynb": ("workdirs/notebooks/memface/speak.mp4",),
}
# The VoxCeleb notebook's small settings skip the final animation (its evaluation is the result).
SHOWS_VIDEO = ("mcnet_quickstart.ipynb", "memface_quickstart.ipynb")


def _read(name: str) -> nbformat.NotebookNode:
  return nbformat.read(NOTEBOOKS / name, as_version=4)


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_stored_clean(name):
  """No outputs or execution counts are committed; the first code cell holds the parameters."""
  nb = _read(name)
  nbformat.validate(nb)
  code = [c for c in nb.cells if c.cell_type == "code"]
  assert all(c.outputs == [] and c.execution_count is None for c in code), "clear the outputs"
  assert "parameters" in code[0].metadata.get("tags", [])
  assert "RUNLOCAL" in code[0].source
  untitled = [c.source.splitlines()[0] for c in code if not c.source.startswith("# @title ")]
  assert not untitled, f"every code cell starts with '# @title ...': {untitled}"
  assert any("train_and_evaluate(" in c.source for c in code)


@pytest.fixture(scope="module")
def kernel_dirs(tmp_path_factory) -> list[str]:
  """A kernelspec running this interpreter (the venv's), whatever `python` is on PATH."""
  root = tmp_path_factory.mktemp("kernels")
  spec = root / "talkingmem-test"
  spec.mkdir()
  (spec / "kernel.json").write_text(json.dumps({
      "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
      "display_name": "talkingmem test", "language": "python"}))
  return [str(root)]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> pathlib.Path:
  return tmp_path_factory.mktemp("notebook_data")


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs(name, kernel_dirs, data_dir, tmp_path, monkeypatch):
  """Top to bottom without errors, writing its products (and showing a video inline)."""
  from jupyter_client.kernelspec import KernelSpecManager
  from jupyter_client.manager import AsyncKernelManager
  from nbclient import NotebookClient

  # The kernel inherits this environment (conftest's CPU devices and compile cache included).
  monkeypatch.setenv("TALKINGMEM_RUNLOCAL", "1")
  monkeypatch.setenv("TALKINGMEM_DATA_DIR", str(data_dir))
  monkeypatch.setenv("JAX_DEFAULT_MATMUL_PRECISION", "highest")  # same programs as the tests
  nb = _read(name)
  km = AsyncKernelManager(kernel_name="talkingmem-test",
                          kernel_spec_manager=KernelSpecManager(kernel_dirs=kernel_dirs))
  client = NotebookClient(nb, km=km, timeout=CELL_TIMEOUT_S, allow_errors=False,
                          resources={"metadata": {"path": str(tmp_path)}})
  try:
    client.execute()  # raises CellExecutionError with the failing cell and its traceback
  finally:
    if os.environ.get("TALKINGMEM_NOTEBOOK_OUT"):  # executed copies to look at, outside the repo
      out = pathlib.Path(os.environ["TALKINGMEM_NOTEBOOK_OUT"])
      out.mkdir(parents=True, exist_ok=True)
      nbformat.write(nb, out / name)
  missing = [p for p in PRODUCTS[name] if not (tmp_path / p).is_file()]
  assert not missing, f"{name} ran but did not write {missing}"
  shown = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "display_data"]
  if name in SHOWS_VIDEO:
    assert any("<video" in o.data.get("text/html", "") for o in shown), "no video shown inline"
