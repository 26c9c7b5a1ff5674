"""Demo step 2: training with a wall-clock budget, a progress bar and a SIGTERM backstop."""
from __future__ import annotations

import copy
import logging as py_logging
import os
import re
import signal
import threading
import time
from typing import Any, Optional

from absl import logging
import jax
import ml_collections

_BACKSTOP_REPEAT_SECONDS = 5.0


class _TrainLogTracker(py_logging.Handler):
  """Reads the step and loss from the trainer's metric log lines ('[step] train/loss=...')."""

  _PATTERN = re.compile(r"^\[(\d+)\]")
  _LOSS = re.compile(r"train/loss=([-+0-9.eE]+|nan|inf)")

  def __init__(self):
    super().__init__(level=py_logging.INFO)
    self.step: Optional[int] = None
    self.loss: Optional[float] = None

  def emit(self, record: py_logging.LogRecord) -> None:
    try:
      message = record.getMessage()
    except Exception:  # pylint: disable=broad-except
      return
    match = self._PATTERN.match(message)
    if match:
      self.step = int(match.group(1))
      loss = self._LOSS.search(message)
      if loss:
        self.loss = float(loss.group(1))


def _progress_loop(budget_s: float, tracker: _TrainLogTracker, done: threading.Event,
                   start: float) -> None:
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  total = max(int(round(budget_s)), 1)
  with tqdm(total=total, unit="s", desc="training", dynamic_ncols=True,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n}/{total} s "
                       "[{elapsed}<{remaining}]{postfix}") as bar:
    while not done.wait(1.0):
      bar.n = min(int(time.time() - start), total)
      postfix = {}
      if tracker.step is not None:
        postfix["step"] = tracker.step
      if tracker.loss is not None:
        postfix["loss"] = f"{tracker.loss:.4f}"
      bar.set_postfix(postfix, refresh=False)
      bar.refresh()


def train_with_budget(config: ml_collections.ConfigDict, train_dir: str, budget_s: float,
                      backstop_s: float) -> dict[str, Any]:
  """Runs `trainer.train_and_evaluate` (no periodic eval) for at most `budget_s` seconds.

  Sets `config.training.max_train_seconds = budget_s` (the trainer stops, saves and returns once
  that much training time has passed). If it is still running `backstop_s` later, the demo sends
  itself SIGTERM, which the trainer's PreemptionWatcher turns into "save a checkpoint and stop".
  Returns {'steps_before', 'steps_after', 'train_seconds', 'stopped_by_backstop'}.
  """
  from neural_assets.training import checkpointing  # pylint: disable=g-import-not-at-top
  from neural_assets.training import trainer  # pylint: disable=g-import-not-at-top
  config = copy.deepcopy(config)
  config.training.max_train_seconds = float(budget_s)
  checkpoint_dir = os.path.join(train_dir, "checkpoints")
  steps_before = _latest_step(checkpoint_dir, checkpointing)

  tracker = _TrainLogTracker()
  absl_logger = logging.get_absl_logger()
  absl_logger.addHandler(tracker)
  done = threading.Event()
  start = time.time()
  progress = threading.Thread(target=_progress_loop, args=(budget_s, tracker, done, start),
                              daemon=True)
  backstop_fired = threading.Event()
  in_main_thread = threading.current_thread() is threading.main_thread()
  previous_handler = None
  backstop = None
  if backstop_s >= 0 and in_main_thread:
    # Our own handler under the trainer's: a SIGTERM arriving while the trainer's watcher is not
    # installed (set-up, compilation, after the loop) is then ignored instead of killing the
    # demo, and the backstop repeats it until the watcher catches one.
    previous_handler = signal.signal(signal.SIGTERM, lambda *_: None)

    def fire():
      if done.wait(budget_s + backstop_s):
        return
      logging.warning("Training overran its %.0f s budget by %.0f s: sending SIGTERM (every "
                      "%.0f s) so the trainer saves and stops.", budget_s, backstop_s,
                      _BACKSTOP_REPEAT_SECONDS)
      backstop_fired.set()
      while True:
        os.kill(os.getpid(), signal.SIGTERM)
        if done.wait(_BACKSTOP_REPEAT_SECONDS):
          return
    backstop = threading.Thread(target=fire, daemon=True)
    backstop.start()
  progress.start()
  try:
    state = trainer.train_and_evaluate(config, train_dir, run_eval=False)
  finally:
    done.set()
    progress.join()
    if backstop is not None:
      backstop.join()
    absl_logger.removeHandler(tracker)
    if previous_handler is not None:
      signal.signal(signal.SIGTERM, previous_handler)
  return dict(steps_before=steps_before or 0, steps_after=int(jax.device_get(state.step)),
              train_seconds=time.time() - start,
              stopped_by_backstop=backstop_fired.is_set())


def _latest_step(checkpoint_dir: str, checkpointing: Any) -> Optional[int]:
  if not os.path.isdir(checkpoint_dir):
    return None
  checkpointer = checkpointing.Checkpointer(checkpoint_dir, 1, async_save=False)
  try:
    return checkpointer.latest_step()
  finally:
    checkpointer.close()
