"""Neural Assets on the Waymo Open Dataset (paper setting): FRONT camera videos at 256x256
(centre crop of the 1920x1280 frames), labelled vehicles / pedestrians / cyclists + background.

Data: `python -m data_pipelines.waymo --camera FRONT` per split writes
`train.array_record-*` / `validation.array_record-*`.
"""
from configs import paper_base


def get_config():
  config = paper_base.get_config(max_objects=16)  # (open) many small objects per frame.
  data = config.data
  data.train_files = "train.array_record*"
  data.eval_files = "validation.array_record*"
  # (open) 10 Hz frames: up to 1 s apart, so most objects stay in view.
  data.min_gap, data.max_gap = 0, 10
  data.swap_prob = 0.5  # (open)
  data.resize_method = "area"
  data.min_box_size = 0.03  # (open) distant cars are a few pixels at 256 px.
  # Pose inputs: depth in metres, raw (no scale): lidar labels reach ~75 m, so depth reaches the
  # pose MLP as up to ~75. paper_base's invalid_3d_boxes "drop" matters most here: lidar-labelled
  # objects beside and behind the FRONT camera are common, and keep_all_objects makes them slot
  # candidates (it drops only invalid 3D boxes, then keeps the max_objects largest).
  return config
