"""Scene editing with a trained Neural Assets model, one module per concern.

  scene.py   `Scene` (image, 2D / 3D boxes, camera), its `.npz` files, scenes from video records.
  ops.py     `Edit` / `Asset` and the pure edit operations (translate, rotate, rescale, remove,
             duplicate, insert, replace_background, change / move / orbit camera) with their
             validity checks (`EditError`). Geometry only, no model.
  render.py  token composition (`build_token_plan`, `compose_tokens`) and `render` (DDIM + VAE).
Loading a trained model is `neural_assets.inference` (re-exported here for convenience).

Every public name is importable from `neural_assets.editing`:

  from neural_assets import editing, inference
  bundle = inference.load_model_for_inference(workdir)
  scene = editing.Scene.load("scene.npz")
  edit = editing.rotate(editing.translate(scene, 0, (0.5, 0, 0)), 1, yaw=90)
  images = editing.render(bundle, scene, edit)  # [E, V, H, W, 3] uint8
"""
from neural_assets.editing.ops import Asset
from neural_assets.editing.ops import CAMERA_ROTATION_AXES
from neural_assets.editing.ops import DEFAULT_ROTATION_AXES
from neural_assets.editing.ops import Edit
from neural_assets.editing.ops import EditError
from neural_assets.editing.ops import EditRefused
from neural_assets.editing.ops import FRAMES
from neural_assets.editing.ops import EDIT_FORMAT_VERSION
from neural_assets.editing.ops import load_scene_or_edit
from neural_assets.editing.ops import as_edit
from neural_assets.editing.ops import change_camera
from neural_assets.editing.ops import duplicate
from neural_assets.editing.ops import euler_rotation
from neural_assets.editing.ops import insert
from neural_assets.editing.ops import move_camera
from neural_assets.editing.ops import orbit_camera
from neural_assets.editing.ops import remove
from neural_assets.editing.ops import replace_background
from neural_assets.editing.ops import rescale
from neural_assets.editing.ops import rotate
from neural_assets.editing.ops import translate
from neural_assets.editing.render import build_token_plan
from neural_assets.editing.render import compose_tokens
from neural_assets.editing.render import render
from neural_assets.editing.scene import SCENE_ARRAYS
from neural_assets.editing.scene import SCENE_FORMAT_VERSION
from neural_assets.editing.scene import Scene
from neural_assets.editing.scene import box_from_corners
from neural_assets.editing.scene import scene_from_video_record
from neural_assets.inference import ModelBundle
from neural_assets.config_files import from_json as config_from_json
from neural_assets.inference import find_checkpoint
from neural_assets.inference import load_model_for_inference
