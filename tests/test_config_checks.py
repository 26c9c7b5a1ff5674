"""Config range checks, override typos and the CLI validators (neural_assets/config_checks.py,
neural_assets/range_checks.py)."""
import argparse

import pytest

from configs import smoke
from neural_assets import range_checks
from neural_assets import config_checks


@pytest.mark.parametrize("key,value,message", [
    ("training.num_train_steps", -5,
     "config.training.num_train_steps=-5 is out of range: expected an integer >= 1."),
    ("checkpoint.every_steps", 0,
     "config.checkpoint.every_steps=0 is out of range: expected an integer >= 1."),
    ("optimizer.ema_decay", 1.5,
     "config.optimizer.ema_decay=1.5 is out of range: expected a finite number in [0, 1)."),
    ("optimizer.lr", -1e-4, "config.optimizer.lr=-0.0001 is out of range: expected a finite "
                            "number >= 0."),
    ("sampler.guidance_scale", float("nan"),
     "config.sampler.guidance_scale=nan: NaN and inf are not valid config values."),
    ("data.global_batch_size", 0,
     "config.data.global_batch_size=0 is out of range: expected an integer >= 1."),
])
def test_out_of_range_values_are_refused_with_the_range(key, value, message):
  config = smoke.get_config()
  config_checks.check_config(config)  # The shipped config passes.
  section, name = key.rsplit(".", 1)
  node = config
  for part in section.split("."):
    node = node[part]
  node[name] = value
  with pytest.raises(config_checks.ConfigError) as info:
    config_checks.check_config(config)
  assert str(info.value) == message


def test_unknown_override_names_the_key_and_close_matches():
  config = smoke.get_config()
  line = config_checks.unknown_override(config, ["main", "--config.optimzer.lr=1", "--x=1"])
  assert line == ("--config.optimzer.lr: config has no key 'optimzer'; did you mean "
                  "config.optimizer?")
  line = config_checks.unknown_override(config, ["--config.training.num_trian_steps=3"])
  assert "did you mean config.training.num_train_steps" in line  # The closest first.
  line = config_checks.unknown_override(config, ["--config.training.zzzz=3"])
  assert line.startswith("--config.training.zzzz: config.training has no key 'zzzz'; the keys "
                         "there are ")
  assert config_checks.unknown_override(config, ["--config.optimizer.lr=1"]) is None


def test_argparse_validators_refuse_nan_and_out_of_range():
  parser = argparse.ArgumentParser(prog="p", exit_on_error=False)
  parser.add_argument("--guidance_scale", type=range_checks.finite_float(low=0.0))
  parser.add_argument("--num_videos", type=range_checks.int_at_least(1))
  parser.add_argument("--prob", type=range_checks.finite_float(0.0, 1.0))
  args = parser.parse_args(["--guidance_scale", "2.5", "--num_videos", "3", "--prob", "1"])
  assert (args.guidance_scale, args.num_videos, args.prob) == (2.5, 3, 1.0)
  for argv, message in ((["--guidance_scale", "nan"], "nan is not a finite number >= 0"),
                        (["--guidance_scale", "inf"], "inf is not a finite number >= 0"),
                        (["--num_videos", "-3"], "-3 is not an integer >= 1"),
                        (["--num_videos", "x"], "'x' is not an integer"),
                        (["--prob", "1.5"], "1.5 is not a finite number in [0, 1]")):
    with pytest.raises(argparse.ArgumentError, match=message.replace("[", r"\[")):
      parser.parse_args(argv)
