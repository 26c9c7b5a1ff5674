"""Tests of neural_assets/report.py: grids, boxes, event-file scalars, metrics table, the page."""
import base64
import io
import os
import re

import numpy as np
from PIL import Image
import pytest

from neural_assets import images
from neural_assets import report


def _image(value, size=8):
  return np.full((size, size, 3), value, np.uint8)


def _png_pixels(data: bytes) -> np.ndarray:
  return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_to_uint8_converts_and_rejects():
  np.testing.assert_array_equal(images.to_uint8(np.full((2, 2, 3), 0.5, np.float32)),
                                np.full((2, 2, 3), 128, np.uint8))
  assert images.to_uint8(np.zeros((2, 2))).shape == (2, 2, 3)
  with pytest.raises(ValueError, match="not in"):
    images.to_uint8(np.full((2, 2, 3), 2.0, np.float32))
  with pytest.raises(ValueError, match="NaN"):
    images.to_uint8(np.full((2, 2, 3), np.nan, np.float32))
  with pytest.raises(ValueError, match="shape"):
    images.to_uint8(np.zeros((2, 2, 4), np.uint8))


def test_image_grid_places_tiles():
  grid = images.image_grid([[_image(10), _image(20)], [_image(30)]], pad=1, pad_value=255)
  assert grid.shape == (2 * 9 + 1, 2 * 9 + 1, 3)
  assert (grid[1:9, 1:9] == 10).all() and (grid[1:9, 10:18] == 20).all()
  assert (grid[10:18, 1:9] == 30).all()
  assert (grid[10:18, 10:18] == 255).all()  # Missing tile stays padding.
  assert (grid[0] == 255).all() and (grid[:, 9] == 255).all()
  with pytest.raises(ValueError, match="expected"):
    images.image_grid([[_image(0, 8), _image(0, 4)]])


def test_draw_boxes_outline_only():
  out = report.draw_boxes(_image(0, 10), [[0.2, 0.2, 0.6, 0.8], [0, 0, 0, 0]], color=(9, 9, 9))
  assert (out[2, 2:8] == 9).all() and (out[5, 2:8] == 9).all()  # Top and bottom edges.
  assert (out[2:6, 2] == 9).all() and (out[2:6, 7] == 9).all()  # Left and right edges.
  assert (out[3:5, 3:7] == 0).all()  # Inside untouched.
  assert (out[7:] == 0).all()  # The all-zero (padded) box draws nothing.


def test_read_event_scalars_from_clu_writer(tmp_path):
  from clu import metric_writers  # Same writer as the trainer (TF summary files).
  writer = metric_writers.create_default_writer(str(tmp_path), asynchronous=False)
  for step, loss in ((1, 0.9), (2, 0.5), (4, 0.25)):
    writer.write_scalars(step, {"train/loss": loss})
  writer.write_scalars(4, {"eval/image/psnr": 12.5})
  writer.write_images(4, {"eval/images": np.zeros((1, 4, 4, 3), np.float32)})
  writer.flush()
  curves = report.read_event_scalars(str(tmp_path))
  assert set(curves) == {"train/loss", "eval/image/psnr"}
  np.testing.assert_array_equal(curves["train/loss"][0], [1, 2, 4])
  np.testing.assert_allclose(curves["train/loss"][1], [0.9, 0.5, 0.25], rtol=1e-6)
  np.testing.assert_allclose(curves["eval/image/psnr"][1], [12.5])


def test_metrics_table_rows_columns_and_values():
  table = report.metrics_table_html({
      "model": {"image/psnr": 21.23456, "object/ssim": 0.5, "image/count": 8},
      "copy source frame": {"image/psnr": 17.0, "object/ssim": 0.25, "image/count": 8.0},
  })
  rows = re.findall(r"<tr>(.*?)</tr>", table)
  assert len(rows) == 3
  headers = [h.strip() for h in re.findall(r"<th>([^<&]*)", rows[0])]
  assert headers == ["method", "image/psnr", "image/count", "object/ssim"]
  assert re.findall(r"<td>(.*?)</td>", rows[1]) == ["model", "21.2346", "8", "0.5000"]
  assert re.findall(r"<td>(.*?)</td>", rows[2]) == ["copy source frame", "17.0000", "8", "0.2500"]
  assert "&uarr;" in rows[0]
  assert "-" in report.metrics_table_html({"a": {"image/psnr": 1.0}, "b": {"image/ssim": 1.0}})


@pytest.mark.parametrize("embed", [False, True])
def test_write_report_writes_every_image_and_table(tmp_path, embed):
  out = str(tmp_path / "report")
  grids = [report.Grid("recon", "Reconstruction", images.image_grid([[_image(50), _image(60)]]),
                       ("source", "sample")),
           report.Grid("translate", "Translate", images.image_grid([[_image(70)]]))]
  curves = {"train/loss": (np.array([1, 2, 3]), np.array([1.0, 0.5, 0.2])),
            "eval/image/psnr": (np.array([3]), np.array([14.0]))}
  metrics = {"model": {"image/psnr": 14.0, "object/psnr": 11.5},
             "copy source frame": {"image/psnr": 16.25, "object/psnr": 9.0}}
  path = report.write_report(out, grids=grids, metrics=metrics, curves=curves,
                             config_text='{"lr": 0.001}', run_info={"steps": 3, "seconds": 1.5},
                             image_scale=2, embed_images=embed)
  assert path == os.path.join(out, "index.html")
  text = open(path, encoding="utf-8").read()
  expected_pngs = ["grid_recon.png", "grid_translate.png", "curves_eval.png", "curves_train.png"]
  assert sorted(os.listdir(out)) == sorted(expected_pngs + ["index.html"])
  sources = re.findall(r"<img src='([^']*)'", text)
  assert len(sources) == len(expected_pngs)
  for name in expected_pngs:
    data = open(os.path.join(out, name), "rb").read()
    if embed:
      assert f"data:image/png;base64,{base64.b64encode(data).decode()}" in sources
    else:
      assert name in sources
  recon = _png_pixels(open(os.path.join(out, "grid_recon.png"), "rb").read())
  assert recon.shape == (2 * 12, 2 * 22, 3)  # image_scale=2 of the [12, 22] grid.
  assert (recon[4:20, 4:20] == 50).all()
  assert "<td>model</td><td>14.0000</td><td>11.5000</td>" in text
  assert "<td>copy source frame</td><td>16.2500</td><td>9.0000</td>" in text
  assert "{&quot;lr&quot;: 0.001}" in text and "<th>steps</th><td>3</td>" in text


def test_write_report_rejects_duplicate_grid_names(tmp_path):
  grid = report.Grid("a", "A", _image(0))
  with pytest.raises(ValueError, match="unique"):
    report.write_report(str(tmp_path), grids=[grid, grid], metrics={"m": {"image/psnr": 1.0}})
