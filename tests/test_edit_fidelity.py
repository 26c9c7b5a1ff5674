"""Edit fidelity (the runner, neural_assets/demo/edit_benchmark.py, and its CLI,
benchmarks/edit_fidelity.py; the ground truth, data_pipelines/synthetic_edits.py;
cases, scores, effects and report, neural_assets/evaluation/edit_*.py): ground-truth renders of
edits, the scores' ceiling, and a smoke run of the runner on a tiny checkpoint."""
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import edit_fidelity as ef_cli  # pylint: disable=g-import-not-at-top,wrong-import-position
from neural_assets.demo import edit_benchmark  # pylint: disable=g-import-not-at-top,wrong-import-position
from neural_assets.evaluation import edit_fidelity as ef  # pylint: disable=g-import-not-at-top,wrong-import-position
from data_pipelines import synthetic  # pylint: disable=g-import-not-at-top,wrong-import-position
from data_pipelines import synthetic_edits  # pylint: disable=g-import-not-at-top,wrong-import-position
from neural_assets.evaluation import edit_cases  # pylint: disable=g-import-not-at-top,wrong-import-position
from neural_assets.evaluation import edit_effects  # pylint: disable=g-import-not-at-top,wrong-import-position
from neural_assets.evaluation import edit_report  # pylint: disable=g-import-not-at-top,wrong-import-position
from neural_assets import editing  # pylint: disable=g-import-not-at-top,wrong-import-position
from neural_assets.evaluation import lpips  # pylint: disable=g-import-not-at-top,wrong-import-position

RES = 48
CFG = synthetic.SceneConfig(height=RES, width=RES, num_frames=4)
SEED = 1000


@pytest.fixture(scope="module")
def held():
  return synthetic_edits.heldout_scenes(CFG, SEED, 3, (RES, RES), 6, frame=1)


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
    image, masks = synthetic_edits.render_ground_truth(h.scene, _states(h), CFG, (RES, RES))
    np.testing.assert_array_equal(image, h.scene.image)
    assert sorted(masks) == list(range(h.scene.num_objects))


def test_edits_render_as_the_edited_state_given_directly(held):
  h = held[0]
  scene, states = h.scene, _states(h)
  k = 0
  offset = np.array([0.5, -0.25, 0.0])
  rendered = lambda e: synthetic_edits.render_ground_truth(  # noqa: E731
      e, states, CFG, (RES, RES))[0]
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
  k = int(np.argmax([m.sum() for m in synthetic_edits.render_ground_truth(h.scene, _states(h), CFG,
                                                             (RES, RES))[1].values()]))
  image, masks = synthetic_edits.render_ground_truth(editing.remove(h.scene, k), _states(h), CFG,
                                                     (RES, RES))
  assert k not in masks and len(masks) == h.scene.num_objects - 1
  keep = [i for i in range(h.scene.num_objects) if i != k]
  want = synthetic.render_state(h.state.subset(h.scene.instance_ids[keep]), CFG)
  np.testing.assert_array_equal(image, want["rgb"])
  # What was the object now shows what is behind it.
  _, before = synthetic_edits.render_ground_truth(h.scene, _states(h), CFG, (RES, RES))
  assert (image[before[k]] != h.scene.image[before[k]]).any()


def test_duplicate_and_insert_copy_the_appearance(held):
  h, other = held[0], held[1]
  states = _states(h, other)
  scene = h.scene if h.scene.num_objects < 6 else editing.remove(h.scene, 0)
  dup = editing.duplicate(scene, 1, (0.0, 0.0, 0.0), center=(0.0, 0.0, 0.5), allow_invalid=True)
  state, objects = synthetic_edits.ground_truth_state(dup, states)
  new, orig = objects[len(dup.assets) - 1], objects[1]
  np.testing.assert_array_equal(state.colors[new], state.colors[orig])
  assert state.shapes[new] == state.shapes[orig] and state.patterns[new] == state.patterns[orig]
  ins = editing.insert(scene, other.scene, 0, allow_invalid=True)
  state, objects = synthetic_edits.ground_truth_state(ins, states)
  donor = other.state.subset(other.scene.instance_ids[:1])
  np.testing.assert_array_equal(state.colors[objects[len(ins.assets) - 1]], donor.colors[0])
  # Background swap: the donor's ground and sky, this scene's camera.
  state, _ = synthetic_edits.ground_truth_state(editing.replace_background(h.scene, other.scene),
                                                states)
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
    return np.stack([synthetic_edits.render_ground_truth(e, states, CFG, (RES, RES))[0]
                     for e in edits])

  scorer = ef.Scorer(_random_lpips(), crop_size=RES)
  result = edit_benchmark.score_scene(h, other, 6, perfect, scorer, CFG)
  assert set(result["scores"]) == set(edit_cases.EDIT_TYPES)  # every edit type was applied.
  means = ef.aggregate([result])
  for name in edit_cases.EDIT_TYPES:
    for method in ("model", "ground truth (ceiling)"):
      row = means[name][method]
      assert row["image/psnr"] == ef.PSNR_CAP and row["image/lpips"] == 0.0, (name, row)
      assert row["image/ssim"] == pytest.approx(1.0, abs=1e-6), (name, row)
      # A background swap's region is the whole image; its localisation, the changed pixels.
      assert row["region/psnr"] == ef.PSNR_CAP and row["region/lpips"] == 0.0
      assert row["region/ssim"] == pytest.approx(1.0, abs=1e-6)
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
  assert set(saved["means"]) == set(edit_cases.EDIT_TYPES)
  assert saved["checkpoint_step"] == 0
  assert report["settings"]["held_out_seed"] == synthetic_edits.DEFAULT_SEED
  # A random model is far from the ground truth; the ceiling row is not.
  model = saved["summary"]["model"]
  assert model["image/psnr"] < 40 and saved["summary"]["ground truth (ceiling)"]["image/psnr"] \
      == ef.PSNR_CAP
  assert saved["per_scene"][0]["unedited_ground_truth_vs_source_psnr"] == ef.PSNR_CAP
  # The powered format: per-scene scores and ground-truth changes, paired differences with
  # intervals (one scene: none), the verdict per edit type, marked in both tables.
  scene0 = saved["per_scene"][0]
  assert set(scene0["scores"]) == set(scene0["ground_truth_change"]) == set(edit_cases.EDIT_TYPES)
  assert min(scene0["ground_truth_change"].values()) >= ef.MIN_GROUND_TRUTH_CHANGE
  diff = saved["differences"]["rotate (yaw)"]["source frame"]["region/psnr"]
  assert diff["n"] == 1 and diff["low"] is None and not diff["better_than_zero"]
  assert saved["takes_effect"] == {name: False for name in edit_cases.EDIT_TYPES}
  assert saved["settings"]["bootstrap"]["seed"] == edit_effects.BOOTSTRAP_SEED
  table = open(os.path.join(out, "table.md")).read()
  assert "| edit | takes effect | scenes |" in table and table.count("| no |") >= 10
  page = open(os.path.join(out, "index.html")).read()
  assert "Does each edit take effect?" in page and page.count("<td>no</td>") >= 10


# ------------------------------------------------------------------------------------------------
# Power: visible ground-truth changes, paired differences with intervals, "takes effect".


def _world(name: str) -> synthetic.SceneConfig:
  import importlib  # pylint: disable=g-import-not-at-top
  config = importlib.import_module(f"configs.{name}").get_config()
  return synthetic_edits.scene_config_for(config)


@pytest.mark.parametrize("name", ["synthetic_3d", "synthetic"])
def test_every_edit_types_ground_truth_differs_from_the_unedited_one(name):
  # On both demo worlds, every one of the ten edit types is applied to every scene with a
  # magnitude whose ground truth differs from the unedited ground truth in at least
  # MIN_GROUND_TRUTH_CHANGE of the scored region's pixels (recomputed here from the renders).
  config, res, num = _world(name), (64, 64), 6
  held = synthetic_edits.heldout_scenes(config, SEED, num + edit_benchmark.NUM_DONORS, res, 3)
  states = _states(*held)
  scorer = ef.Scorer(None, crop_size=16)

  def copy_source(scene, edits):
    return np.stack([scene.image] * len(edits))

  for i in range(num):
    donors = held[i + 1:i + 1 + edit_benchmark.NUM_DONORS]
    result = edit_benchmark.score_scene(held[i], donors, 3, copy_source, scorer, config)
    assert set(result["scores"]) == set(edit_cases.EDIT_TYPES), result["notes"]
    cases = edit_cases.make_cases(held[i].scene, [d.scene for d in donors], 3)  # Without the check.
    unedited, u_masks = synthetic_edits.render_ground_truth(held[i].scene, states, config, res)
    for edit_type, change in result["ground_truth_change"].items():
      assert change >= ef.MIN_GROUND_TRUTH_CHANGE, (edit_type, change)
      assert result["notes"][edit_type] != "no variant accepted"
    # The rotated object's region, recomputed: the first accepted yaw turns it visibly.
    k = cases["rotate (yaw)"].obj
    turned = editing.rotate(held[i].scene, k, yaw=edit_cases.YAW_DEGREES[0])
    image, masks = synthetic_edits.render_ground_truth(turned, states, config, res)
    box = ef.union_box([ef.mask_box(u_masks[k]), ef.mask_box(masks[k])])
    assert ef.changed_fraction(image, unedited, box, 0.1) >= ef.MIN_GROUND_TRUTH_CHANGE
    # Copying the source frame scores exactly the source-frame baseline.
    for edit_type, by_method in result["scores"].items():
      assert by_method["model"]["region/psnr"] == by_method["source frame"]["region/psnr"]


def test_bootstrap_interval_and_paired_differences():
  rng = np.random.default_rng(3)
  effect = 1.0 + 0.5 * rng.standard_normal(32)
  low, high = edit_effects.bootstrap_interval(effect)
  assert 0.0 < low < effect.mean() < high
  # About the normal-theory width 2 * 1.96 * sd / sqrt(n).
  width = 2 * 1.96 * effect.std(ddof=1) / np.sqrt(effect.size)
  assert 0.7 * width < high - low < 1.3 * width
  assert edit_effects.bootstrap_interval(effect) == (low, high)  # The seed is fixed.
  noise = 0.5 * rng.standard_normal(32)
  noise -= noise.mean()
  low, high = edit_effects.bootstrap_interval(noise)
  assert low < 0.0 < high
  assert edit_effects.bootstrap_interval(np.full(5, 2.0)) == (2.0, 2.0)
  assert edit_effects.bootstrap_interval(np.array([1.0])) == (None, None)

  def scene(model, unedited, source, lpips_model=0.1):
    row = lambda psnr, iou, lp: {"region/psnr": psnr, "localisation/iou": iou,  # noqa: E731
                                 "region/lpips": lp}
    return {"scores": {"rotate (yaw)": {"model": row(*model, lpips_model),
                                        "model, unedited": row(*unedited, 0.3),
                                        "source frame": row(*source, 0.3)}}}

  # The model beats both baselines on every scene in PSNR and IoU: takes effect.
  per_scene = [scene((15 + e, 0.5 + 0.05 * e), (14, 0.3), (13, 0.2)) for e in effect]
  diffs = edit_effects.paired_differences(per_scene)
  rot = diffs["rotate (yaw)"]
  assert rot["model, unedited"]["region/psnr"]["mean"] == pytest.approx(1 + effect.mean())
  assert rot["source frame"]["localisation/iou"]["n"] == 32
  lp = rot["source frame"]["region/lpips"]
  assert lp["better"] == "lower" and lp["mean"] == pytest.approx(-0.2) and lp["better_than_zero"]
  assert edit_effects.takes_effect(diffs)["rotate (yaw)"]
  assert not edit_effects.takes_effect(diffs)["remove"]  # No scenes: no effect.
  # The same PSNR as the unedited render on half the scenes, worse on the other: no effect.
  per_scene = [scene((14 + (i % 2) * -1.0, 0.5), (14, 0.3), (13, 0.2)) for i in range(32)]
  assert not edit_effects.takes_effect(edit_effects.paired_differences(per_scene))["rotate (yaw)"]
  # NaN (e.g. an object not visible in the truth) drops the scene from that pair only.
  per_scene = [scene((15, float("nan") if i < 4 else 0.5), (14, 0.3), (13, 0.2))
               for i in range(32)]
  rot = edit_effects.paired_differences(per_scene)["rotate (yaw)"]
  assert rot["source frame"]["localisation/iou"]["n"] == 28
  assert rot["source frame"]["region/psnr"]["n"] == 32


def test_model_differences_pair_two_models_over_the_same_scenes():
  rng = np.random.default_rng(5)
  gain = 1.0 + 0.5 * rng.standard_normal(32)
  spread = 3.0 * rng.standard_normal(32)  # Scenes differ much more than the models do.

  def report(psnr_of, iou=0.4):
    per_scene = []
    for v in range(32):
      scores = {name: {"model": {"region/psnr": psnr_of(v, name), "localisation/iou": iou,
                                 "region/lpips": 0.3}} for name in edit_cases.EDIT_TYPES}
      scores["remove"]["model"]["localisation/iou"] = float("nan")  # Not scored: drops out.
      per_scene.append({"video": v, "scores": scores})
    return per_scene[::-1] if iou > 0.45 else per_scene  # Paired by video, not by position.

  # A beats B by `gain` dB on rotate only; ties elsewhere.
  a = report(lambda v, name: 14.0 + spread[v] + (gain[v] if name == "rotate (yaw)" else 0.0),
             iou=0.5)
  b = report(lambda v, name: 14.0 + spread[v])
  diffs = edit_effects.model_differences(a, b)
  rot = diffs["rotate (yaw)"]["region/psnr"]
  assert rot["mean"] == pytest.approx(gain.mean()) and rot["n"] == 32
  # Paired by video: the interval is that of the per-scene gains, the scenes' spread cancels.
  assert (rot["low"], rot["high"]) == pytest.approx(edit_effects.bootstrap_interval(gain))
  assert 0.0 < rot["low"] and rot["better_than_zero"]
  assert diffs["rescale"]["region/psnr"] == {"mean": 0.0, "low": 0.0, "high": 0.0, "n": 32,
                                             "better": "higher", "better_than_zero": False}
  assert diffs["remove"]["localisation/iou"]["n"] == 0
  assert diffs["rescale"]["localisation/iou"]["mean"] == pytest.approx(0.1)
  # All edit types: each scene's mean over the ten types.
  every = diffs[edit_effects.ALL_EDIT_TYPES]["region/psnr"]
  assert every["mean"] == pytest.approx(gain.mean() / len(edit_cases.EDIT_TYPES))
  assert every["n"] == 32
  # B - A is the mirror image, with the interval on the other side.
  back = edit_effects.model_differences(b, a)["rotate (yaw)"]["region/psnr"]
  assert back["mean"] == pytest.approx(-gain.mean()) and back["high"] < 0
  with pytest.raises(ValueError, match="Not the same held-out scenes"):
    edit_effects.model_differences(a, b[:31])


def test_a_perfect_model_takes_effect_everywhere_and_copying_nowhere():
  config, res, num = _world("synthetic_3d"), (64, 64), 8
  held = synthetic_edits.heldout_scenes(config, SEED, num + edit_benchmark.NUM_DONORS, res, 3)
  states = _states(*held)
  scorer = ef.Scorer(_random_lpips(), crop_size=64)  # AlexNet LPIPS needs crops of >= ~32 px.

  def perfect(scene, edits):
    return np.stack([synthetic_edits.render_ground_truth(e, states, config, res)[0] for e in edits])

  def copy_source(scene, edits):
    return np.stack([scene.image] * len(edits))

  for render, expected in ((perfect, True), (copy_source, False)):
    donors = lambda i: held[i + 1:i + 1 + edit_benchmark.NUM_DONORS]
    per_scene = [edit_benchmark.score_scene(held[i], donors(i), 3, render, scorer, config)
                 for i in range(num)]
    diffs = edit_effects.paired_differences(per_scene)
    effects = edit_effects.takes_effect(diffs)
    assert effects == {name: expected for name in edit_cases.EDIT_TYPES}, (expected, effects)
    text = edit_report.format_effects(diffs, effects)
    assert text.count("| YES |") == (10 if expected else 0)
    assert text.count("| no |") == (0 if expected else 10)
    if expected:
      assert diffs["rotate (yaw)"]["model, unedited"]["region/lpips"]["better_than_zero"]
