"""Experiment configs from files: the one loader every entry point uses.

A config spec is `path/to/file.py` (its `get_config()`), `path/to/file.py:ARG` (its
`get_config(ARG)`, ml_collections' `config_flags` convention, e.g. `configs/videos.py:tiny`;
when ARG names a function defined in that file, that function, called with no arguments, e.g.
`tests/editing_fixtures.py:tiny_config`), or a `.json` written by `ConfigDict.to_json_best_effort` (what a training workdir saves).
Overrides `a.b.c=value` are parsed as JSON when they parse, else taken as strings; a key the
config does not have is refused (configs are locked).
"""
from __future__ import annotations

import importlib.util
import json
import os
from typing import Any, Sequence

import ml_collections


class ConfigFileError(ValueError):
  """A config spec that names no readable config, or an override of a key it does not have."""


def _tuples(x: Any) -> Any:
  """JSON lists -> tuples, recursively (configs hold tuples; JSON writes lists)."""
  if isinstance(x, dict):
    return {k: _tuples(v) for k, v in x.items()}
  if isinstance(x, list):
    return tuple(_tuples(v) for v in x)
  return x


def from_json(text: str) -> ml_collections.ConfigDict:
  """A config saved with `ConfigDict.to_json_best_effort` -> ConfigDict (lists back to tuples)."""
  return ml_collections.ConfigDict(_tuples(json.loads(text)))


def _module(path: str):
  if not os.path.isfile(path):
    raise ConfigFileError(f"No config file {path!r}.")
  # A fresh module name per file, so two configs loaded in one process never share a module.
  name = "_config_" + os.path.abspath(path).replace(os.sep, "_").replace(".", "_")
  spec = importlib.util.spec_from_file_location(name, path)
  if spec is None or spec.loader is None:
    raise ConfigFileError(f"Cannot import config file {path!r} (want a .py with get_config() "
                          "or a .json).")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: Sequence[str]) -> ml_collections.ConfigDict:
  """`a.b.c=value` items set on `config` in place (value: JSON if it parses, else a string)."""
  for item in overrides:
    key, sep, raw = item.partition("=")
    if not sep:
      raise ConfigFileError(f"Override {item!r} is not key=value.")
    try:
      value = json.loads(raw)
    except json.JSONDecodeError:
      value = raw
    node = config
    *parents, leaf = key.split(".")
    for p in parents:
      if p not in node:
        raise ConfigFileError(f"Override {item!r}: the config has no {key}.")
      node = node[p]
    if leaf not in node:
      raise ConfigFileError(f"Override {item!r}: the config has no {key}.")
    with node.ignore_type():
      node[leaf] = _tuples(value)
  return config


def load(spec: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
  """The config a spec names (see the module docstring), with `overrides` applied."""
  if spec.endswith(".json"):
    if not os.path.isfile(spec):
      raise ConfigFileError(f"No config file {spec!r}.")
    with open(spec) as f:
      config = from_json(f.read())
  else:
    path, _, arg = spec.partition(":")
    module = _module(path)
    function = getattr(module, arg, None) if arg else None
    if callable(function) and getattr(function, "__module__", None) == module.__name__:
      config = function()
    elif not hasattr(module, "get_config"):
      raise ConfigFileError(f"Config file {path!r} has no get_config()"
                            + (f" and no function {arg!r}." if arg else "."))
    else:
      config = module.get_config(arg) if arg else module.get_config()
  return apply_overrides(config, overrides)
