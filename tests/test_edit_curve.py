"""Edit effects against steps (benchmarks/edit_curve.py): step choice, the kept cells, a run."""
import json

from benchmarks import edit_curve
from neural_assets.demo import edit_benchmark
from neural_assets.evaluation import edit_cases
from neural_assets.evaluation.edit_effects import BASELINES, EFFECT_METRICS


def test_every_nth_step_and_always_the_last():
  assert edit_curve.choose_steps([500, 1000, 1500, 2000, 2500], 2) == [1000, 2000, 2500]
  assert edit_curve.choose_steps([500, 1000], 4) == [1000]
  assert edit_curve.choose_steps([500, 1000, 1500], 1) == [500, 1000, 1500]
  assert edit_curve.choose_steps([], 3) == []


def test_a_point_keeps_the_verdict_and_the_intervals():
  cell = lambda mean: {"mean": mean, "low": mean - 1, "high": mean + 1, "n": 8, "better": "higher",
                       "better_than_zero": mean > 1}
  report = {"takes_effect": {"remove": True, "rotate (yaw)": False},
            "differences": {name: {b: {m: cell(v) for m in EFFECT_METRICS} for b in BASELINES}
                            for name, v in (("remove", 5.0), ("rotate (yaw)", 0.2))}}
  point = edit_curve.curve_point(report)
  assert point["remove"]["takes_effect"] and not point["rotate (yaw)"]["takes_effect"]
  assert point["remove"]["source frame"]["region/psnr"] == {"mean": 5.0, "low": 4.0, "high": 6.0}


def test_a_run_over_two_checkpoints_scores_each_as_a_fresh_load(tmp_path, capsys):
  from tests import editing_fixtures as fx  # pylint: disable=g-import-not-at-top
  workdir = fx.make_tiny_checkpoint(str(tmp_path / "run"), seed=0, step=0)
  fx.make_tiny_checkpoint(workdir, seed=1, step=1)
  out = tmp_path / "curve.json"
  result = edit_curve.main(["--checkpoint", workdir, "--num_scenes", "2", "--every", "1",
                            "--out", str(out)])
  saved = json.loads(out.read_text())
  assert saved == json.loads(json.dumps(result))
  first, second = saved["points"]
  assert (first["step"], second["step"]) == (0, 1)
  assert set(first["effects"]) == set(edit_cases.EDIT_TYPES)
  # Random models: nothing takes effect.
  assert not any(e["takes_effect"] for p in (first, second) for e in p["effects"].values())
  assert (tmp_path / "curve.png").stat().st_size > 0
  printed = capsys.readouterr().out
  assert "step 0: 0 of 10 take effect" in printed and "step 1: 0 of 10 take effect" in printed
  # Step 1 was scored with step 0's bundle and held-out scenes, reused: the same numbers as a
  # bundle loaded fresh from step 1, and not step 0's.
  fresh = edit_benchmark.load_bundle(workdir, 1)
  report = edit_benchmark.run(fresh, num_scenes=2, lpips_fn=edit_benchmark.experiment_lpips(fresh),
                              log=lambda *_: None)
  assert second["effects"] == json.loads(json.dumps(edit_curve.curve_point(report)))
  assert first["effects"] != second["effects"]
