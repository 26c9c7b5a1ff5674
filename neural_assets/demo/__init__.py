"""The embedded demo (`python -m neural_assets.demo`, `bash demo.sh`), one module per step:

  data        synthetic train / eval splits; held-out scenes as .npz (the edit CLI's format)
  vae_warmup  the toy VAE fitted as an autoencoder
  training    training with a wall-clock budget
  evaluation  model vs copy-source baseline vs VAE ceiling; token-swap denoising errors
  edits       every edit type on held-out scenes
  run         `run_demo`: all of it and the report
  host_devices      one XLA CPU device per core (set before JAX starts)
  malloc_hugepages  transparent huge pages for malloc (re-executes the process)
  __main__    the command line

The public names are re-exported here.
"""
from neural_assets.demo.data import SYNTHETIC_DEFAULTS, data_spec, ensure_data
from neural_assets.demo.edits import EDIT_TYPES, make_edits, run_edits
from neural_assets.demo.evaluation import (Restored, copy_source_sample_fn,
                                           evaluate_model_and_baseline,
                                           make_vae_reconstruction_fn, restore_latest)
from neural_assets.demo.run import reconstruction_grid, run_demo
from neural_assets.demo.training import TrainingProgress, train_with_budget
from neural_assets.demo.vae_warmup import ensure_vae, pretrain_vae
