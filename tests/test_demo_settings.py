"""The demo's knobs: defaults in one place, the config's `demo` block over them, typos refused."""
import ml_collections
import pytest

from configs import smoke
from configs import synthetic
from neural_assets.config_checks import ConfigError
from neural_assets.demo import settings


def test_a_config_without_a_demo_block_gets_the_defaults():
  config = smoke.get_config()
  assert "demo" not in config
  assert settings.demo_settings(config).to_dict() == dict(settings.DEFAULTS)


def test_the_demo_block_overrides_and_keeps_the_default_types():
  config = synthetic.get_config()
  demo = settings.demo_settings(config)
  assert demo.minutes == config.demo.minutes and demo.fidelity_scenes == config.demo.fidelity_scenes
  assert demo.malloc_hugepages is True  # synthetic.py turns it on; the default is off.
  assert demo.trajectory_frames == settings.DEFAULTS["trajectory_frames"]  # Not in the block.
  config.demo.minutes = 3  # An int where the default is a float.
  assert isinstance(settings.demo_settings(config).minutes, float)


def test_an_unknown_demo_key_is_refused():
  config = smoke.get_config()
  config.demo = ml_collections.ConfigDict(dict(minuts=5.0))
  with pytest.raises(ConfigError, match=r"Unknown config.demo key\(s\) \['minuts'\]"):
    settings.demo_settings(config)
