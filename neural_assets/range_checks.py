"""Range checks for command-line numbers, as argparse `type=` functions.

    parser.add_argument("--guidance_scale", type=finite_float(low=0.0), default=None)
    parser.add_argument("--num_videos", type=int_at_least(1), default=16)

A value out of range (or NaN / inf for a float) is refused at parse time by argparse, with the
flag's name and the valid range: `argument --num_videos: -3 is not an integer >= 1`. The
same checks back the absl flags of the demo (`absl_validator`) and `config_checks`.
"""
from __future__ import annotations

import argparse
import math
from typing import Callable, Optional


def describe_range(kind: str, low: Optional[float] = None, high: Optional[float] = None,
                   high_inclusive: bool = True) -> str:
  """'an integer >= 1', 'a finite number in [0, 1)', ..."""
  if low is not None and high is not None:
    return f"{kind} in [{low:g}, {high:g}{']' if high_inclusive else ')'}"
  if low is not None:
    return f"{kind} >= {low:g}"
  if high is not None:
    return f"{kind} {'<=' if high_inclusive else '<'} {high:g}"
  return kind


def in_range(value: float, low: Optional[float], high: Optional[float],
             high_inclusive: bool = True) -> bool:
  if isinstance(value, float) and not math.isfinite(value):
    return False
  if low is not None and value < low:
    return False
  if high is not None and (value > high if high_inclusive else value >= high):
    return False
  return True


def int_at_least(low: int) -> Callable[[str], int]:
  """argparse type: an integer >= `low`."""
  def parse(text: str) -> int:
    try:
      value = int(text)
    except ValueError:
      raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < low:
      raise argparse.ArgumentTypeError(f"{value} is not {describe_range('an integer', low)}")
    return value
  parse.__name__ = f"integer >= {low}"
  return parse


def finite_float(low: Optional[float] = None, high: Optional[float] = None,
                 high_inclusive: bool = True) -> Callable[[str], float]:
  """argparse type: a finite float (no nan / inf) in [low, high] (either bound optional)."""
  expected = describe_range("a finite number", low, high, high_inclusive)

  def parse(text: str) -> float:
    try:
      value = float(text)
    except ValueError:
      raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not in_range(value, low, high, high_inclusive):
      raise argparse.ArgumentTypeError(f"{text} is not {expected}")
    return value
  parse.__name__ = expected
  return parse


def absl_validator(flag_name: str, kind: str, low: Optional[float] = None,
                   high: Optional[float] = None, allow_none: bool = True):
  """(checker, message) for `absl.flags.register_validator(flag_name, checker, message)`."""
  def check(value) -> bool:
    if value is None:
      return allow_none
    return in_range(value, low, high)
  return check, f"--{flag_name} must be {describe_range(kind, low, high)}"
