"""The one config loader (neural_assets/config_files.py): specs, overrides, refusals."""
import os

import pytest

from neural_assets import config_files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _path(name):
  return os.path.join(ROOT, "configs", name)


def test_py_spec_with_and_without_argument():
  paper = config_files.load(_path("videos.py"))
  tiny = config_files.load(_path("videos.py") + ":tiny")
  assert tuple(tiny.data.resolution) != tuple(paper.data.resolution)
  sd = config_files.load(_path("sd21.py") + ":768")
  assert sd != config_files.load(_path("sd21.py"))


def test_overrides_parse_json_and_strings_and_refuse_unknown_keys():
  config = config_files.load(_path("smoke.py"),
                             ["training.num_train_steps=7", "data.resolution=[24, 40]",
                              "model.conditioning.null_condition=zeros"])
  assert config.training.num_train_steps == 7
  assert config.data.resolution == (24, 40)
  assert config.model.conditioning.null_condition == "zeros"
  with pytest.raises(config_files.ConfigFileError, match="no training.num_trian_steps"):
    config_files.load(_path("smoke.py"), ["training.num_trian_steps=7"])
  with pytest.raises(config_files.ConfigFileError, match="no trainng.num_train_steps"):
    config_files.load(_path("smoke.py"), ["trainng.num_train_steps=7"])
  with pytest.raises(config_files.ConfigFileError, match="not key=value"):
    config_files.load(_path("smoke.py"), ["training.num_train_steps"])


def test_json_round_trip_restores_tuples(tmp_path):
  config = config_files.load(_path("smoke.py"))
  path = tmp_path / "config.json"
  path.write_text(config.to_json_best_effort())
  back = config_files.load(str(path))
  assert back.data.resolution == tuple(config.data.resolution)
  assert back.to_dict() == config.to_dict()


def test_missing_or_wrong_files_are_refused(tmp_path):
  with pytest.raises(config_files.ConfigFileError, match="No config file"):
    config_files.load(str(tmp_path / "nope.py"))
  bad = tmp_path / "bad.py"
  bad.write_text("X = 1\n")
  with pytest.raises(config_files.ConfigFileError, match="no get_config"):
    config_files.load(str(bad))


def test_a_named_function_of_the_file(tmp_path):
  fixture = tmp_path / "fixture.py"
  fixture.write_text("import ml_collections\n"
                     "def get_config(arg='a'):\n  return ml_collections.ConfigDict({'x': arg})\n"
                     "def small():\n  return ml_collections.ConfigDict({'x': 'small'})\n")
  assert config_files.load(str(fixture)).x == "a"
  assert config_files.load(f"{fixture}:b").x == "b"
  assert config_files.load(f"{fixture}:small").x == "small"
  # Imported names are not the file's functions: `ml_collections` goes to get_config.
  assert config_files.load(f"{fixture}:ml_collections").x == "ml_collections"
