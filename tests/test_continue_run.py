"""benchmarks/continue_run.py: a run continued from its checkpoint with changed settings."""
import json
import os
import shutil

import pytest

from benchmarks import ablations
from benchmarks import continue_run

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CONFIG = os.path.join(_ROOT, "tests", "editing_fixtures.py") + ":tiny_config"


def test_override_keys():
  assert continue_run.override_keys(["a.b=1", 'c="x=y"']) == ["a.b", "c"]
  with pytest.raises(ValueError, match="want KEY=JSON"):
    continue_run.override_keys(["a.b"])


def test_continues_a_run_with_a_change_and_pairs_it(tmp_path, one_device):
  first = tmp_path / "first"
  ablations.main(["--config", _CONFIG, "--num_scenes", "1", "--vae_minutes", "0",
                  "--num_train_videos", "2", "--num_eval_videos", "3", "--num_frames", "3",
                  "--compilation_cache", "", "--steps", "2", "--workdir", str(first),
                  "--variants", "paper", "--out", str(tmp_path / "a.json"),
                  "--chart", str(tmp_path / "a.png")])
  run, data = str(first / "paper"), str(first / "data")
  against = str(first / "paper" / "edit_fidelity" / "edit_fidelity.json")
  common = ["--config", _CONFIG, "--run", run, "--data_dir", data, "--num_scenes", "1",
            "--num_train_videos", "2", "--num_eval_videos", "3", "--num_frames", "3",
            "--from_step", "2", "--to_step", "4"]
  out = tmp_path / "cont"
  result = continue_run.main(common + ["--workdir", str(out), "--set",
                                       "optimizer.new_layers_lr=1e-5", "--against", against])
  assert result["from_step"] == 2 and result["steps"] == 4
  assert sorted(os.listdir(out / "train" / "checkpoints"))[-1] == "4"
  saved = json.loads((out / "train" / "config.json").read_text())
  assert saved["optimizer"]["new_layers_lr"] == 1e-5  # The change trained steps 3-4.
  assert result["heldout"]["eval/image/count"] > 0
  intervals = result["against"]["edit_intervals"]
  assert "all edit types" in intervals and intervals["all edit types"]["region/psnr"]["n"] == 1
  assert json.loads((out / "result.json").read_text())["steps"] == 4
  # A run of another config (here: its config.json says shuffled poses) is refused unless the
  # difference is named with --set, before any training.
  other = tmp_path / "other"
  shutil.copytree(run, other)
  config = json.loads((other / "train" / "config.json").read_text())
  config["model"]["conditioning"]["shuffle_pose"] = True
  (other / "train" / "config.json").write_text(json.dumps(config))
  with pytest.raises(ValueError, match="shuffle_pose: True vs False"):
    continue_run.main(common[:3] + [str(other)] + common[4:]
                      + ["--workdir", str(tmp_path / "bad")])
  assert not (tmp_path / "bad" / "train" / "checkpoints").exists()
  with pytest.raises(SystemExit):  # --against must exist; --to_step after --from_step.
    continue_run.main(common + ["--workdir", str(tmp_path / "x"), "--against", "nope.json"])
  with pytest.raises(SystemExit):
    continue_run.main(common[:-1] + ["2", "--workdir", str(tmp_path / "x")])
