"""Neural Assets on MOVi-E (paper setting): 256x256, 23 objects + background, frame pairs with a
random gap in [0, 23] and a random order (release).

Data: `python -m data_pipelines.movi_e` converts the TFDS `movi_e/256x256` splits into
`train.array_record-*` and `validation.array_record-*`.
  python -m neural_assets.main --config=configs/movi_e.py --workdir=DIR \
      --config.data.data_dir=/data/movi_e --config.training.init_checkpoint=/ckpt/na_init
"""
from configs import paper_base


def get_config():
  config = paper_base.get_config(max_objects=23)  # MOVi-E: up to 23 objects (release).
  data = config.data
  data.train_files = "train.array_record*"
  data.eval_files = "validation.array_record*"
  data.min_gap, data.max_gap = 0, 23  # any two of the 24 frames (release).
  data.swap_prob = 0.5  # (release)
  data.resize_method = "area"  # video area-resized to 256 (release).
  data.min_box_size = 0.0  # (open) no size filter beyond visibility.
  # Pose inputs: depth in Kubric world units, raw (no scale; the camera starts 8-12 units from
  # the scene centre: depths of order 1-20). paper_base's invalid_3d_boxes "drop" (open);
  # "keep" is the release (raw projections of boxes behind the camera or off screen).
  return config
