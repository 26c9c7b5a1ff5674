"""Neural Assets on your own videos: records written by `python -m data_pipelines.videos`.

  python -m data_pipelines.videos --input MY_VIDEOS --out_dir /data/na/mine              # train
  python -m data_pipelines.videos --input MY_EVAL_VIDEOS --out_dir /data/na/mine --split eval
  python -m neural_assets.main --config=configs/videos.py --workdir=/runs/mine \\
      --config.data.data_dir=/data/na/mine --config.training.init_checkpoint=/ckpt/na_init

The converter writes `<split>.array_record-XXXXX-of-YYYYY`; this config trains on `train.*`
and evaluates on `eval.*` (`--config.data.eval_files` for another split name).

Presets (`--config=configs/videos.py:PRESET`), the model and training recipe of an existing
experiment with the data pointed at converted videos:
  paper (default)  configs/paper_base.py: SD-2.1 base at 256x256 + DINO ViT-B/8, from converted
                   pretrained weights (`training.init_checkpoint`, README "Training on real
                   data"); what real footage needs.
  toy              configs/synthetic.py's small model at 64x64 (the demo's), trains from scratch
                   on a CPU; its frozen VAE is random unless `training.init_checkpoint` gives one
                   (the demo fits one first), so samples are noise without it.
  tiny             configs/smoke.py's model at 32x32: runs a few steps in seconds on a CPU, to
                   check that converted data trains (README "Training on your own videos").
"""
import ml_collections

from configs import paper_base
from configs import smoke
from configs import synthetic

PRESETS = ("paper", "toy", "tiny")
# (open) Object slots of the paper preset: between Objectron's 8 and MOVi-E's 23; videos with
# more objects keep the largest boxes (data_pipelines/frame_pairs.py).
MAX_OBJECTS = 16
# (open) Frame gaps of training pairs for the paper preset: up to 1 s apart at 30 fps, as
# objects of real footage may leave the view over longer gaps; the toy / tiny presets keep
# their own (short synthetic-style videos).
MAX_GAP = 30


def get_config(preset: str = "paper") -> ml_collections.ConfigDict:
  if preset == "paper":
    config = paper_base.get_config(max_objects=MAX_OBJECTS)
    config.data.min_gap, config.data.max_gap = 0, MAX_GAP
  elif preset == "toy":
    config = synthetic.get_config()
    # The sections that describe the demo's own synthetic data and run, not converted videos.
    del config["synthetic"]
    del config["demo"]
    # The latent cache encodes every training frame once: fine for the demo's 4,096 frames,
    # not for an unknown number of user frames.
    config.training.cache_latents = False
  elif preset == "tiny":
    config = smoke.get_config()
  else:
    raise ValueError(f"Unknown configs/videos.py preset {preset!r}; want one of {PRESETS}.")
  # `python -m data_pipelines.videos --split train / eval` names its shards like this.
  config.data.train_files = "train.array_record-*"
  config.data.eval_files = "eval.array_record-*"
  return config
