"""The Colab editing notebook runs top to bottom on a tiny checkpoint (nbclient, real kernel)."""
import os

import nbformat
from nbclient import NotebookClient
import numpy as np

from neural_assets import editing
from tests import editing_fixtures as fx

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, "notebooks", "edit_scenes.ipynb")


def _outputs(nb, output_type=None):
  for cell in nb.cells:
    for output in cell.get("outputs", []):
      if output_type is None or output.get("output_type") == output_type:
        yield cell, output


def test_notebook_runs_unattended(tmp_path, monkeypatch):
  workdir = fx.make_tiny_checkpoint(str(tmp_path / "run"))
  out_dir = tmp_path / "edits"
  for name, value in (("CHECKPOINT", workdir), ("NUM_STEPS", "2"), ("NUM_VARIATIONS", "2"),
                      ("OUT_DIR", str(out_dir)), ("TRAIN_MINUTES_IF_MISSING", "0")):
    monkeypatch.setenv(f"NA_{name}", value)
  nb = nbformat.read(NOTEBOOK, as_version=4)
  assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells)
  NotebookClient(nb, timeout=300, kernel_name="python3",
                 resources={"metadata": {"path": str(tmp_path)}}).execute()

  errors = [o for _, o in _outputs(nb, "error")]
  assert not errors, errors
  text = "".join(o.get("text", "") for _, o in _outputs(nb, "stream"))
  assert "Checkpoint step 0: 16x16 images, 6 object slots." in text
  # Reconstruction + one render per edit type (all nine found a valid variant), 2 variations.
  assert f"rendered (10, 2, {fx.RESOLUTION}, {fx.RESOLUTION}, 3) uint8" in text
  for name in ("translate", "rotate", "rescale", "remove", "duplicate", "insert",
               "background swap", "camera orbit", "composite"):
    assert f"\n{name:16s} " in "\n" + text, name
  # The last cell launched the interactive editor without blocking the kernel.
  assert "editor running at http://127.0.0.1:" in text
  figures = [o for _, o in _outputs(nb) if "image/png" in o.get("data", {})]
  assert len(figures) == 4
  scene = editing.Scene.load(str(out_dir / "scene.npz"))
  assert scene.image.shape == (fx.RESOLUTION, fx.RESOLUTION, 3)
  assert 1 <= scene.num_objects <= fx.MAX_OBJECTS - 2
  assert np.all(scene.sizes > 0)
