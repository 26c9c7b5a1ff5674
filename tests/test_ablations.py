"""The ablation switches (benchmarks/ablations.py): each changes what it should and nothing else."""
import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import conditioning as conditioning_config
from data_pipelines import frame_pairs
from neural_assets.evaluation import edit_cases
from neural_assets.models import conditioning
from tests import frame_pairs_reference
from tests import video_fixtures


B, N, H, W = 3, 4, 32, 32
CONTEXT = 16


def _config(**switches):
  c = conditioning_config.get_config("vits8", max_objects=N)
  c.encoder.update(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                   intermediate_size=32, patch_size=8, image_size=32, input_size=32)
  c.update(token_dim=CONTEXT // 2, context_dim=CONTEXT, pose_hidden_dim=16, **switches)
  return c


def _batch(seed=0, pose_scale=1.0):
  rng = np.random.default_rng(seed)
  corners = rng.uniform(0.05, 0.95, size=(B, N, 2, 2))
  boxes = np.concatenate([corners.min(2), corners.max(2)], -1).astype(np.float32)
  slot_mask = np.array([[True, False, True, True], [True, True, True, True],
                        [False, False, True, False]])
  boxes[~slot_mask] = 0.0
  target_corners = rng.uniform(0, 1, size=(B, N, 8, 3)).astype(np.float32)
  target_corners[~slot_mask] = 0.0
  pose = np.tile(np.eye(4, dtype=np.float32), (B, 1, 1))
  pose[:, :3, 3] = pose_scale * rng.normal(size=(B, 3))
  return dict(source_image=jnp.asarray(rng.uniform(size=(B, H, W, 3)), jnp.float32),
              source_boxes=jnp.asarray(boxes), target_corners=jnp.asarray(target_corners),
              slot_mask=jnp.asarray(slot_mask), relative_pose=jnp.asarray(pose))


@pytest.fixture(scope="module")
def params():
  tok = conditioning.AssetTokenizer(_config())
  return jax.jit(tok.init)(jax.random.key(0), _batch(), jnp.zeros((B,), bool))["params"]


def _tokens(params, batch, train=False, key=0, **switches):
  tok = conditioning.AssetTokenizer(_config(**switches))
  apply = jax.jit(tok.apply, static_argnums=(3,))
  tokens, mask = apply({"params": params}, batch, jnp.zeros((B,), bool), train,
                       rngs={"dropout": jax.random.key(key)})
  return np.asarray(tokens).reshape(B, N + 1, 4, -1), np.asarray(mask).reshape(B, N + 1, 4)


def test_switch_defaults_are_the_papers():
  c = conditioning_config.get_config()
  assert c.background_token == "full" and c.shuffle_pose is False


def test_background_none_gives_a_zero_background_slot(params):
  full, full_mask = _tokens(params, _batch())
  none, none_mask = _tokens(params, _batch(), background_token="none")
  assert np.abs(full[:, N]).max() > 0 and full_mask[:, N].all()
  np.testing.assert_array_equal(none[:, N], 0.0)
  assert not none_mask[:, N].any()
  np.testing.assert_array_equal(none[:, :N], full[:, :N])  # objects untouched.


def test_background_no_pose_ignores_the_camera(params):
  near, far = _batch(pose_scale=0.0), _batch(pose_scale=5.0)
  full_near, _ = _tokens(params, near)
  full_far, _ = _tokens(params, far)
  assert np.abs(full_near[:, N] - full_far[:, N]).max() > 1e-4  # the paper's token sees it ...
  no_near, mask = _tokens(params, near, background_token="no_pose")
  no_far, _ = _tokens(params, far, background_token="no_pose")
  np.testing.assert_allclose(no_near[:, N], no_far[:, N], atol=1e-6)  # ... this one does not,
  assert mask[:, N].all() and np.abs(no_near[:, N] - full_near[:, N]).max() > 1e-4
  np.testing.assert_array_equal(no_near[:, :N], full_near[:, :N])


def test_unknown_background_mode_is_refused(params):
  with pytest.raises(ValueError, match="background_token"):
    _tokens(params, _batch(), background_token="partial")


def test_shuffle_slots_permutes_valid_slots_only():
  valid = jnp.asarray([[True, False, True, True, True], [False, True, False, False, False]])
  tokens = jnp.broadcast_to(jnp.arange(5.0)[None, :, None], (2, 5, 3))
  seen = set()
  for seed in range(20):
    out = np.asarray(conditioning.shuffle_slots(jax.random.key(seed), tokens, valid))[..., 0]
    np.testing.assert_array_equal(out[:, 1], [1, 1])  # invalid slot / single valid slot kept.
    np.testing.assert_array_equal(out[1], np.arange(5))
    assert sorted(out[0, [0, 2, 3, 4]]) == [0, 2, 3, 4]  # a permutation of the valid slots.
    seen.add(tuple(out[0]))
  assert len(seen) > 5  # random, not a fixed shift.


def test_shuffle_pose_permutes_pose_parts_in_training_only(params):
  batch = _batch()
  plain, _ = _tokens(params, batch)
  np.testing.assert_array_equal(_tokens(params, batch, shuffle_pose=True)[0], plain)  # eval
  shuffled, _ = _tokens(params, batch, train=True, key=3, shuffle_pose=True)
  # The token of slot s is Dense([appearance_s, pose_j]): find j for every slot by rendering the
  # tokens with every slot given slot j's corners.
  corners = np.asarray(batch["target_corners"])
  with_pose_of = [_tokens(params, dict(batch, target_corners=jnp.asarray(
      np.repeat(corners[:, j:j + 1], N, axis=1))))[0] for j in range(N)]
  mask = np.asarray(batch["slot_mask"])
  moved = 0
  for b in range(B):
    valid = np.flatnonzero(mask[b])
    source = []
    for s in valid:
      match = [j for j in valid if np.allclose(shuffled[b, s], with_pose_of[j][b, s], atol=1e-5)]
      assert len(match) == 1, (b, s, match)
      source.append(match[0])
    assert sorted(source) == list(valid)  # a permutation of the valid objects' poses.
    moved += int((np.asarray(source) != valid).any())
    np.testing.assert_array_equal(shuffled[b, :N][~mask[b]], plain[b, :N][~mask[b]])
  assert moved >= 1
  np.testing.assert_array_equal(shuffled[:, N], plain[:, N])  # background untouched.


def test_single_frame_pairs_take_the_source_as_target():
  # The data-side switch: data.max_gap = 0 (paired frames: the config's max_gap > 0).
  record = video_fixtures.make_video_record(num_frames=6, height=16, width=16)
  cfg = frame_pairs.FramePairConfig(resolution=(16, 16), max_objects=4, min_gap=0, max_gap=0)
  rng = np.random.default_rng(0)
  for _ in range(10):
    example, _ = frame_pairs_reference.sample_example(record, 0, rng, cfg)
    assert example["source_frame"] == example["target_frame"]
    np.testing.assert_array_equal(example["source_image"], example["target_image"])
    np.testing.assert_allclose(example["relative_pose"], np.eye(4), atol=1e-6)


# ------------------------------------------------------------------------------------------------
# The runner (benchmarks/ablations.py).


def test_variant_configs_flip_one_switch_each():
  from benchmarks import ablations  # pylint: disable=g-import-not-at-top
  from configs import synthetic  # pylint: disable=g-import-not-at-top
  base = synthetic.get_config()
  assert base.optimizer.frozen_prefixes == () and base.data.max_gap > 0
  assert base.model.conditioning.background_token == "full"
  for name, (_, switches) in ablations.VARIANTS.items():
    cfg = ablations.variant_config(base, name)
    get = lambda c, key: functools.reduce(lambda s, part: s[part], key.split("."), c)  # noqa
    assert all(get(cfg, k) == v for k, v in switches.items()), name
    assert bool(switches) == any(get(cfg, k) != get(base, k) for k in switches), name
    assert cfg.model.conditioning.to_dict().keys() == base.model.conditioning.to_dict().keys()
  assert ablations.variant_config(base, "single_frame").data.max_gap == 0
  with pytest.raises(ValueError, match="Unknown variant"):
    ablations.variant_config(base, "nope")


def test_directions_table_and_chart(tmp_path):
  from benchmarks import ablations  # pylint: disable=g-import-not-at-top
  def fake(psnr, iou):
    return {"steps": 10, "heldout": {"heldout/image/psnr": psnr, "heldout/object/psnr": psnr,
                                     "heldout/image/lpips": 1.0 - iou},
            "edit": {"edit/image/psnr": psnr, "edit/region/psnr": None,
                     "edit/region/lpips": 1.0 - iou, "edit/localisation/iou": iou}}
  results = {"paper": fake(20.0, 0.5), "frozen_encoder": fake(19.0, 0.6),
             "shuffled_pose": fake(21.0, 0.1)}
  found = {d["paper"]: d for d in ablations.directions(results)}
  assert set(found) == {"paper > frozen_encoder", "paper > shuffled_pose"}
  # LPIPS is lower-is-better: frozen_encoder's lower LPIPS is a failure of the direction too.
  assert found["paper > frozen_encoder"]["fails_on"] == [
      "heldout/image/lpips", "edit/region/lpips", "edit/localisation/iou"]
  assert "heldout/image/psnr" in found["paper > shuffled_pose"]["fails_on"]
  assert "| paper | 10 | 20.00 | 20.00 | 0.500 | 20.00 | n/a | 0.500 | 0.500 |" in ablations.format_table(results)
  path = ablations.bar_chart(results, str(tmp_path / "chart.png"))
  assert os.path.getsize(path) > 1000


def test_directions_get_paired_intervals_from_the_per_scene_scores(tmp_path):
  from benchmarks import ablations  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  spread = 2.0 * rng.standard_normal(32)

  def variant(name, psnr_gain, iou):
    per_scene = [{"video": v, "scores": {
        edit: {"model": {"region/psnr": 14.0 + spread[v] + (psnr_gain + 0.1 * rng.standard_normal()
                                                            if edit == "rotate (yaw)" else 0.0),
                         "localisation/iou": iou + 0.02 * rng.standard_normal(),
                         "region/lpips": 0.3}} for edit in edit_cases.EDIT_TYPES}}
                 for v in range(32)]
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"per_scene": per_scene}))
    return {"steps": 10, "heldout": {}, "edit": {}, "edit_fidelity_json": str(path)}

  results = {"paper": variant("paper", 1.0, 0.40), "shuffled_pose": variant("s", 0.0, 0.45),
             "single_frame": {"steps": 10, "heldout": {}, "edit": {}}}  # No per-scene scores.
  found = {d["paper"]: d for d in ablations.directions(results)}
  assert "edit_intervals" not in found["paper > single_frame"]
  intervals = found["paper > shuffled_pose"]["edit_intervals"]
  rot = intervals["rotate (yaw)"]
  assert rot["region/psnr"]["verdict"] == "holds" and rot["region/psnr"]["low"] > 0.8
  assert rot["localisation/iou"]["verdict"] == "reversed"  # The loser localises better here.
  assert rot["region/lpips"]["verdict"] == "within noise"  # A tie: [0, 0] is not better.
  assert intervals["rescale"]["region/psnr"]["verdict"] == "within noise"
  text = ablations.format_intervals(found["paper > shuffled_pose"])
  row = next(line for line in text.splitlines() if line.startswith("| rotate (yaw) |"))
  assert f"{rot['region/psnr']['mean']:+.2f} [{rot['region/psnr']['low']:+.2f}" in row
  assert "holds" in row and "reversed" in row


def test_a_step_budget_and_an_adopted_run(tmp_path, one_device):
  """--steps trains to that step; --from_run scores an existing run of the same config exactly
  as its own run scored it, and refuses a run of another variant's config."""
  from benchmarks import ablations  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  config = os.path.join(root, "tests", "editing_fixtures.py") + ":tiny_config"
  common = ["--config", config, "--num_scenes", "1", "--vae_minutes", "0",
            "--num_train_videos", "2", "--num_eval_videos", "3", "--num_frames", "3",
            "--compilation_cache", "", "--steps", "2"]
  first = tmp_path / "first"
  args = common + ["--workdir", str(first), "--variants", "shuffled_pose",
                   "--out", str(tmp_path / "a.json"), "--chart", str(tmp_path / "a.png")]
  trained = ablations.main(args)["results"]["shuffled_pose"]
  assert trained["steps"] == 2 and trained["train_minutes"] is None
  run_dir = str(first / "shuffled_pose" / "train")
  # A run saved before a key existed (here optimizer.hold_steps) trained with the value that
  # does what the code did then (0): adopted as the same config.
  saved = json.loads((first / "shuffled_pose" / "train" / "config.json").read_text())
  assert saved["optimizer"].pop("hold_steps") == 0
  (first / "shuffled_pose" / "train" / "config.json").write_text(json.dumps(saved))
  args = common + ["--workdir", str(tmp_path / "second"), "--variants", "shuffled_pose",
                   "--from_run", f"shuffled_pose={run_dir}", "--data_dir", str(first / "data"),
                   "--out", str(tmp_path / "b.json"), "--chart", str(tmp_path / "b.png")]
  adopted = ablations.main(args)["results"]["shuffled_pose"]
  assert adopted["steps"] == 2 and adopted["adopted_from"] == run_dir
  assert adopted["train_wall_seconds"] is None
  for part in ("edit", "heldout"):  # None: not scored (no LPIPS weights), in both.
    assert adopted[part].keys() == trained[part].keys()
    for key, value in trained[part].items():
      if key.endswith("seconds"):
        continue
      assert adopted[part][key] == (None if value is None else
                                    pytest.approx(value, rel=1e-5, nan_ok=True)), key
  assert any(v is not None for v in trained["edit"].values())
  args = common + ["--workdir", str(tmp_path / "third"), "--variants", "paper",
                   "--from_run", f"paper={run_dir}", "--data_dir", str(first / "data"),
                   "--out", str(tmp_path / "c.json"), "--chart", str(tmp_path / "c.png")]
  with pytest.raises(ValueError, match="shuffle_pose: True vs False"):
    ablations.main(args)
  with pytest.raises(SystemExit):  # A variant that is not run.
    ablations.main(args[:-6] + ["--from_run", f"bg_none={run_dir}"] + args[-4:])


def test_smoke_run_trains_scores_and_resumes(tmp_path, one_device):
  from benchmarks import ablations  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  config = os.path.join(root, "tests", "editing_fixtures.py") + ":tiny_config"
  args = ["--workdir", str(tmp_path / "w"), "--config", config,
          "--variants", "shuffled_pose", "--minutes", "0.01", "--num_scenes", "1",
          "--vae_minutes", "0", "--num_train_videos", "2", "--num_eval_videos", "3",
          "--num_frames", "3", "--compilation_cache", "",
          "--out", str(tmp_path / "a.json"), "--chart", str(tmp_path / "a.png")]
  report = ablations.main(args)
  result = report["results"]["shuffled_pose"]
  assert result["steps"] >= 1 and result["switches"] == {"model.conditioning.shuffle_pose": True}
  assert result["heldout"]["heldout/image/count"] > 0
  assert set(result["edit_means"]) == set(edit_cases.EDIT_TYPES)
  assert os.path.exists(tmp_path / "a.png")
  # A finished variant is read back, not trained again.
  again = ablations.main(args)
  assert again["results"]["shuffled_pose"]["train_wall_seconds"] == result["train_wall_seconds"]
