"""Edit fidelity (neural_assets/evaluation/edit_fidelity.py and its CLI): ground-truth renders of edits, the scores' ceiling,
and a smoke run of the runner on a tiny checkpoint."""
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import edit_fidelity as ef_cli  # pylint: disable=g-import-not-at-top,wrong-import-position
from neural_assets.evaluation import edit_fidelity as ef  # pylint: disable=g-import-not-at-top,wrong-import-position
from data_pipelines import synthetic  # pylint: disable=g-import-not-at-top,wrong-import-position
from neural_assets import editing  # pylint: disable=g-import-not-at-top,wrong-import-position
from neural_assets.evaluation import lpips  # pylint: disable=g-import-not-at-top,wrong-import-position

RES = 48
CFG = synthetic.SceneConfig(height=RES, width=RES, num_frames=4)
SEED = 1000


@pytest.fixture(scope="module")
def held():
  return ef.heldout_scenes(CFG, SEED, 3, (RES, RES), 6, frame=1)


def _states(*helds):
  return {id(h.scene): h.state for h in helds}


def _direct(held, **changes):
  """The generator's own state of the held-out frame, restricted to the Scene's objects (in
  Scene order), with `changes` applied: what the ground truth of an edit must render."""
  return held.state.subset(held.scene.instance_ids).replace(**changes)


def test_state_at_renders_the_generators_frame():
  example = synthetic.generate_example(SEED, 2, CFG)
  for frame in (0, 3):
    out = synthetic.render_state(synthetic.state_at(SEED, 2, frame, CFG), CFG)
    np.testing.assert_array_equal(out["rgb"], example["video"][frame])
    np.testing.assert_array_equal(out["segmentation"], example["segmentations"][frame, ..., 0])
    for k in range(out["masks"].shape[0]):
      np.testing.assert_array_equal(out["masks"][k], out["segmentation"] == k + 1)


def test_unedited_ground_truth_is_the_source_frame(held):
  for h in held:
    image, masks = ef.render_ground_truth(h.scene, _states(h), CFG, (RES, RES))
    np.testing.assert_array_equal(image, h.scene.image)
    assert sorted(masks) == list(range(h.scene.num_objects))


def test_edits_render_as_the_edited_state_given_directly(held):
  h = held[0]
  scene, states = h.scene, _states(h)
  k = 0
  offset = np.array([0.5, -0.25, 0.0])
  rendered = lambda e: ef.render_ground_truth(e, states, CFG, (RES, RES))[0]  # noqa: E731
  direct = lambda s: synthetic.render_state(s, CFG, (RES, RES))["rgb"]  # noqa: E731
  base = _direct(h)

  def moved(name, value):
    arr = np.array(getattr(base, name), np.float64, copy=True)
    arr[k] = value
    return {name: arr}

  # Translation (world axes): the generator's pose moved by the offset.
  got = rendered(editing.translate(scene, k, offset))
  want = direct(_direct(h, **moved("centers", base.centers[k] + offset)))
  # The edit goes through float32 scene poses: a few edge pixels may flip, no more.
  assert (got != want).any(-1).mean() < 0.01 and (got != h.scene.image).any(-1).mean() > 0.01
  # Yaw about the object's own z axis.
  got = rendered(editing.rotate(scene, k, yaw=30.0))
  rot = base.rotations[k] @ editing.euler_rotation(30.0).astype(np.float64)
  want = direct(_direct(h, **moved("rotations", rot)))
  assert (got != want).any(-1).mean() < 0.01
  # Rescale.
  got = rendered(editing.rescale(scene, k, 1.5))
  want = direct(_direct(h, **moved("sizes", base.sizes[k] * 1.5)))
  assert (got != want).any(-1).mean() < 0.01
  # A new camera: the generator's next frame camera, objects where they are.
  next_camera = synthetic.state_at(SEED, h.video, h.frame + 1, CFG).cam_to_world
  got = rendered(editing.change_camera(scene, np.linalg.inv(next_camera)))
  want = direct(_direct(h, cam_to_world=next_camera))
  assert (got != want).any(-1).mean() < 0.01 and (got != h.scene.image).any(-1).mean() > 0.05


def test_a_removed_object_is_absent_from_the_ground_truth(held):
  h = held[0]
  k = int(np.argmax([m.sum() for m in ef.render_ground_truth(h.scene, _states(h), CFG,
                                                             (RES, RES))[1].values()]))
  image, masks = ef.render_ground_truth(editing.remove(h.scene, k), _states(h), CFG, (RES, RES))
  assert k not in masks and len(masks) == h.scene.num_objects - 1
  keep = [i for i in range(h.scene.num_objects) if i != k]
  want = synthetic.render_state(h.state.subset(h.scene.instance_ids[keep]), CFG)
  np.testing.assert_array_equal(image, want["rgb"])
  # What was the object now shows what is behind it.
  _, before = ef.render_ground_truth(h.scene, _states(h), CFG, (RES, RES))
  assert (image[before[k]] != h.scene.image[before[k]]).any()


def test_duplicate_and_insert_copy_the_appearance(held):
  h, other = held[0], held[1]
  states = _states(h, other)
  scene = h.scene if h.scene.num_objects < 6 else editing.remove(h.scene, 0)
  dup = editing.duplicate(scene, 1, (0.0, 0.0, 0.0), center=(0.0, 0.0, 0.5), allow_invalid=True)
  state, objects = ef.ground_truth_state(dup, states)
  new, orig = objects[len(dup.assets) - 1], objects[1]
  np.testing.assert_array_equal(state.colors[new], state.colors[orig])
  assert state.shapes[new] == state.shapes[orig] and state.patterns[new] == state.patterns[orig]
  ins = editing.insert(scene, other.scene, 0, allow_invalid=True)
  state, objects = ef.ground_truth_state(ins, states)
  donor = other.state.subset(other.scene.instance_ids[:1])
  np.testing.assert_array_equal(state.colors[objects[len(ins.assets) - 1]], donor.colors[0])
  # Background swap: the donor's ground and sky, this scene's camera.
  state, _ = ef.ground_truth_state(editing.replace_background(h.scene, other.scene), states)
  np.testing.assert_array_equal(state.ground, other.state.ground)
  np.testing.assert_array_equal(state.cam_to_world, h.state.cam_to_world)


def test_iou_and_difference_mask():
  truth = np.zeros((4, 4), bool)
  truth[1:3, 1:3] = True
  assert ef.iou(truth, truth) == 1.0 and ef.iou(None, truth) == 0.0
  assert np.isnan(ef.iou(truth, np.zeros_like(truth)))
  pred = np.zeros_like(truth)
  pred[1:3, 1:4] = True
  assert ef.iou(pred, truth) == pytest.approx(4 / 6)
  a = np.zeros((2, 2, 3), np.uint8)
  b = a.copy()
  b[0, 0, 2] = 30  # 0.118 > 0.1 in one channel.
  b[1, 1] = 20  # 0.078 in every channel.
  np.testing.assert_array_equal(ef.difference_mask(a, b, 0.1), [[True, False], [False, False]])


def _random_lpips():
  module = lpips.LPIPS(net="alex", width_divisor=16)
  x = jnp.zeros((1, 64, 64, 3))
  params = module.init(jax.random.key(0), x, x)["params"]
  return lambda a, b: lpips.lpips_distance_unit(module, params, jnp.asarray(a), jnp.asarray(b))


def test_a_perfect_model_scores_the_ceiling(held):
  h, other = held[0], held[1]
  states = _states(h, other)

  def perfect(scene, edits):  # The ground truth in place of the model.
    return np.stack([ef.render_ground_truth(e, states, CFG, (RES, RES))[0] for e in edits])

  scorer = ef.Scorer(_random_lpips(), crop_size=RES)
  result = ef.score_scene(h, other, 6, perfect, scorer, CFG)
  assert set(result["scores"]) == set(ef.EDIT_TYPES)  # every edit type was applied.
  means = ef.aggregate([result])
  for name in ef.EDIT_TYPES:
    for method in ("model", "ground truth (ceiling)"):
      row = means[name][method]
      assert row["image/psnr"] == ef.PSNR_CAP and row["image/lpips"] == 0.0, (name, row)
      assert row["image/ssim"] == pytest.approx(1.0, abs=1e-6), (name, row)
      if name != "background swap":
        assert row["region/psnr"] == ef.PSNR_CAP and row["region/lpips"] == 0.0
        assert row["region/ssim"] == pytest.approx(1.0, abs=1e-6)
        if row["localisation/iou"] is not None:
          assert row["localisation/iou"] == 1.0, (name, row)
    # The baselines are not perfect where the edit changes the picture.
    assert means[name]["source frame"]["image/psnr"] < 60.0, name
  assert means["duplicate"]["model, unedited"]["localisation/iou"] == 0.0


def test_smoke_run_on_a_tiny_checkpoint(tmp_path):
  from tests import editing_fixtures as fx  # pylint: disable=g-import-not-at-top
  workdir = fx.make_tiny_checkpoint(str(tmp_path / "run"))
  results = tmp_path / "result.json"
  report = ef_cli.main(["--checkpoint", workdir, "--num_scenes", "1", "--crop_size", "16",
                    "--results_json", str(results)])
  out = os.path.join(workdir, "edit_fidelity")
  assert os.path.exists(os.path.join(out, "index.html"))
  assert any(f.startswith("grid_") and f.endswith(".png") for f in os.listdir(out))
  saved = json.loads(results.read_text())
  assert set(saved["means"]) == set(ef.EDIT_TYPES)
  assert saved["checkpoint_step"] == 0 and report["settings"]["held_out_seed"] == ef.DEFAULT_SEED
  # A random model is far from the ground truth; the ceiling row is not.
  model = saved["summary"]["model"]
  assert model["image/psnr"] < 40 and saved["summary"]["ground truth (ceiling)"]["image/psnr"] \
      == ef.PSNR_CAP
  assert saved["per_scene"][0]["unedited_ground_truth_vs_source_psnr"] == ef.PSNR_CAP
