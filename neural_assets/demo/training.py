"""Demo step 2: training with a wall-clock budget and a progress bar.

The trainer keeps the budget itself (`config.training.max_train_seconds`, set-up and compilation
included) and reports every step to the demo's `on_step` (`TrainingProgress`): the step and loss
for the progress bar, and a backstop that asks it to stop once `budget_s + backstop_s` have
passed. However it stops, the trainer saves the step it stopped at, so the next run resumes there.
"""
from __future__ import annotations

import copy
import os
import threading
import time
from typing import Any, Callable, Mapping, Optional

from absl import logging
import jax
import ml_collections


class TrainingProgress:
  """The demo's `trainer.OnStep`: what the progress bar shows, and the backstop.

  Attributes:
    step, loss: the latest step and logged `train/loss` (None before the first).
    losses: [(step, loss)] of every logged step.
    stopped_by_backstop: the backstop asked the trainer to stop.
  """

  def __init__(self, backstop_after_s: Optional[float],
               clock: Callable[[], float] = time.monotonic):
    """`backstop_after_s`: stop the run once this many seconds have passed (None: never)."""
    self._clock = clock
    self._start = clock()
    self._backstop_after_s = backstop_after_s
    self.step: Optional[int] = None
    self.loss: Optional[float] = None
    self.losses: list[tuple[int, float]] = []
    self.stopped_by_backstop = False

  def __call__(self, step: int, scalars: Mapping[str, float]) -> bool:
    self.step = int(step)
    if "train/loss" in scalars:
      self.loss = float(scalars["train/loss"])
      self.losses.append((self.step, self.loss))
    if (self._backstop_after_s is not None and not self.stopped_by_backstop and
        self._clock() - self._start > self._backstop_after_s):
      logging.warning("Training overran its budget by the %.0f s backstop: asking the trainer "
                      "to save and stop.", self._backstop_after_s)
      self.stopped_by_backstop = True
    return self.stopped_by_backstop


def _progress_loop(budget_s: float, progress: TrainingProgress, done: threading.Event,
                   start: float) -> None:
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  total = max(int(round(budget_s)), 1)
  with tqdm(total=total, unit="s", desc="training", dynamic_ncols=True,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n}/{total} s "
                       "[{elapsed}<{remaining}]{postfix}") as bar:
    while not done.wait(1.0):
      bar.n = min(int(time.time() - start), total)
      postfix = {}
      if progress.step is not None:
        postfix["step"] = progress.step
      if progress.loss is not None:
        postfix["loss"] = f"{progress.loss:.4f}"
      bar.set_postfix(postfix, refresh=False)
      bar.refresh()


def train_with_budget(config: ml_collections.ConfigDict, train_dir: str, budget_s: float,
                      backstop_s: float) -> dict[str, Any]:
  """Runs `trainer.train_and_evaluate` (no periodic eval) for at most `budget_s` seconds.

  Sets `config.training.max_train_seconds = budget_s` (the trainer stops, saves and returns once
  that much time has passed). `backstop_s` >= 0: the run is also stopped (and saved) at the first
  step after `budget_s + backstop_s`; negative: no backstop.
  Returns {'steps_before', 'steps_after', 'train_seconds', 'stopped_by_backstop',
  'losses': [(step, loss)] of the logged steps}.
  """
  # pylint: disable=g-import-not-at-top
  from neural_assets.training import checkpoint_files
  from neural_assets.training import trainer
  # pylint: enable=g-import-not-at-top
  config = copy.deepcopy(config)
  config.training.max_train_seconds = float(budget_s)
  steps = checkpoint_files.step_dirs(os.path.join(train_dir, "checkpoints"))
  steps_before = int(steps[-1].name) if steps else 0

  progress = TrainingProgress(budget_s + backstop_s if backstop_s >= 0 else None)
  done = threading.Event()
  start = time.time()
  bar = threading.Thread(target=_progress_loop, args=(budget_s, progress, done, start),
                         daemon=True)
  bar.start()
  try:
    state = trainer.train_and_evaluate(config, train_dir, run_eval=False, on_step=progress)
  finally:
    done.set()
    bar.join()
  return dict(steps_before=steps_before, steps_after=int(jax.device_get(state.step)),
              train_seconds=time.time() - start,
              stopped_by_backstop=progress.stopped_by_backstop, losses=progress.losses)
