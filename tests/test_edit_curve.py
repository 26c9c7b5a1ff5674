"""Edit effects against steps (benchmarks/edit_curve.py): step choice, the kept cells, a run."""
import json

from benchmarks import edit_curve
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


def test_a_run_over_a_tiny_checkpoint(tmp_path, capsys):
  from tests import editing_fixtures as fx  # pylint: disable=g-import-not-at-top
  workdir = fx.make_tiny_checkpoint(str(tmp_path / "run"))
  out = tmp_path / "curve.json"
  result = edit_curve.main(["--checkpoint", workdir, "--num_scenes", "2", "--out", str(out)])
  saved = json.loads(out.read_text())
  assert saved == json.loads(json.dumps(result))
  (point,) = saved["points"]
  assert point["step"] == 0 and set(point["effects"]) == set(edit_cases.EDIT_TYPES)
  # A random model: nothing takes effect.
  assert not any(e["takes_effect"] for e in point["effects"].values())
  assert (tmp_path / "curve.png").stat().st_size > 0
  assert "step 0: 0 of 10 take effect" in capsys.readouterr().out
