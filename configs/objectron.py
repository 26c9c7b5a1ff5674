"""Neural Assets on Objectron (paper setting; also the paper's ablation dataset): 256x256 centre
crops of the portrait frames, the annotated objects + background.

Objects are static and only the camera moves (paper), so the background token's relative camera
pose carries most of the motion. Data: `python -m data_pipelines.objectron` writes
`<class>_train-*.array_record` / `<class>_test-*.array_record`.
"""
from configs import paper_base


def get_config():
  # (open) Objectron annotates few objects per video (mostly 1); 8 slots leave room.
  config = paper_base.get_config(max_objects=8)
  data = config.data
  # `python -m data_pipelines.objectron` keeps the shard names: `<class>_train-...array_record`.
  data.train_files = "*_train-*.array_record"
  data.eval_files = "*_test-*.array_record"
  # (open) gap range: videos are ~10 s at 30 fps; up to 2 s apart keeps the object in view.
  data.min_gap, data.max_gap = 0, 60
  data.swap_prob = 0.5  # (open) as MOVi.
  data.resize_method = "area"
  data.jpeg_draft = True  # JPEG frames at 1440x1920: decode at reduced size first.
  data.min_box_size = 0.02  # (open) drop boxes under 2% of the crop.
  # Pose inputs: depth in metres (ARKit), raw (no scale): hand-held captures of a table-top
  # object, depths of order 1 m. paper_base's invalid_3d_boxes "drop".
  return config
