"""Scene editing: edit geometry, refusals, scene files, token splicing, rendering and the CLI."""
import os

from PIL import Image
import numpy as np
import pytest

from neural_assets import edit_cli
from neural_assets import editing
from neural_assets.editing import op_grammar
from neural_assets import geometry
from tests import editing_fixtures as fx
from tests import video_fixtures

# Scene B: other objects, seen from frame 1 (camera moved and turned), so moving objects between
# the two scenes goes through a non-trivial change of world frame.
B_CENTERS = [[0.5, 0.2, 5.5], [-0.6, -0.2, 4.5], [0.1, 0.5, 6.5]]
B_SIZES = [[0.7, 0.5, 0.6], [0.5, 0.9, 0.5], [1.1, 0.4, 0.8]]


@pytest.fixture(scope="module")
def scene():
  return fx.make_scene()


@pytest.fixture(scope="module")
def other():
  return fx.make_scene(centers=B_CENTERS, sizes=B_SIZES, frame=1)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  return fx.make_tiny_checkpoint(str(tmp_path_factory.mktemp("tiny_run")))


@pytest.fixture(scope="module")
def bundle(workdir):
  return editing.load_model_for_inference(workdir)


def pinhole(points_cam, k):
  """Independent projection: u = fx x / z + cx, v = fy y / z + cy."""
  x, y, z = points_cam[..., 0], points_cam[..., 1], points_cam[..., 2]
  return np.stack([k[0, 0] * x / z + k[0, 2], k[1, 1] * y / z + k[1, 2], z], axis=-1)


def to_camera(w2c, points):
  return points @ w2c[:3, :3].T + w2c[:3, 3]


# ------------------------------------------------------------------------------------------------
# Scenes.


def test_scene_from_video_record_recovers_the_boxes(scene):
  record = video_fixtures.make_video_record(num_frames=2, height=16, width=16)
  assert scene.num_objects == 4 and scene.image.shape == (16, 16, 3)
  np.testing.assert_allclose(scene.corners_world(), record["box_corners_world"][0], atol=1e-5)
  np.testing.assert_allclose(scene.sizes, [[0.8, 0.6, 0.7], [1.0, 1.2, 0.9], [0.4, 0.3, 0.5],
                                           [0.6, 0.6, 0.6]], atol=1e-5)
  np.testing.assert_allclose(scene.boxes_2d, record["boxes_2d"][0])
  np.testing.assert_array_equal(scene.instance_ids, [0, 1, 2, 3])


def test_scene_from_video_record_drops_invisible_objects_and_crops():
  centers = [[-0.8, -0.3, 5.0], [0.6, 0.4, -6.0]]  # The second is behind the camera.
  record = video_fixtures.make_video_record(num_frames=2, height=16, width=32, centers=centers,
                                            sizes=[[0.8, 0.6, 0.7], [1.0, 1.0, 1.0]])
  scene = editing.scene_from_video_record(record, 0, resolution=(16, 16))
  assert scene.num_objects == 1 and scene.image.shape == (16, 16, 3)
  # Cropping the central half of the width doubles fx and keeps the principal point centred.
  np.testing.assert_allclose(scene.intrinsics[0, 0], 2 * record["intrinsics"][0, 0, 0], rtol=1e-6)
  np.testing.assert_allclose(scene.intrinsics[:2, 2], [0.5, 0.5], atol=1e-6)


def test_box_from_corners_inverts_box_corners_and_rejects_other_orders():
  rng = np.random.default_rng(0)
  rotation = geometry.quaternion_to_matrix(rng.normal(size=(5, 4)))
  center, size = rng.normal(size=(5, 3)), rng.uniform(0.2, 2.0, size=(5, 3))
  corners = geometry.box_corners(center, size, rotation)
  c, s, r = editing.box_from_corners(corners)
  np.testing.assert_allclose(c, center, atol=1e-5)
  np.testing.assert_allclose(s, size, atol=1e-5)
  np.testing.assert_allclose(r, rotation, atol=1e-5)
  with pytest.raises(ValueError, match="canonical order"):
    editing.box_from_corners(corners[:, [0, 1, 2, 3, 4, 6, 5, 7]])


def test_scene_save_load_round_trip(scene, tmp_path):
  path = str(tmp_path / "scene.npz")
  scene.save(path)
  loaded = editing.Scene.load(path)
  for name in editing.SCENE_ARRAYS:
    np.testing.assert_array_equal(getattr(loaded, name), getattr(scene, name))
    assert getattr(loaded, name).dtype == getattr(scene, name).dtype
  np.savez(str(tmp_path / "bad.npz"), image=scene.image)
  with pytest.raises(ValueError, match="not a scene file"):
    editing.Scene.load(str(tmp_path / "bad.npz"))


def test_edit_save_load_round_trip(scene, other, tmp_path):
  edit = editing.orbit_camera(editing.replace_background(editing.insert(editing.remove(
      editing.translate(scene, 0, (0.2, 0.0, 0.3)), 1), other, 2), other), 5.0)
  path = str(tmp_path / "edit.npz")
  edit.save(path)
  loaded = editing.load_scene_or_edit(path)
  assert isinstance(loaded, editing.Edit) and loaded.steps == edit.steps
  assert len(loaded.scenes) == 2 and loaded.background_scene == 1
  np.testing.assert_array_equal(loaded.source.image, scene.image)
  np.testing.assert_array_equal(loaded.scenes[1].boxes_2d, other.boxes_2d)
  np.testing.assert_allclose(loaded.target_corners(), edit.target_corners(), atol=1e-6)
  np.testing.assert_array_equal(loaded.active(), edit.active())
  assert [(a.scene, a.index, a.instance_id, a.removed) for a in loaded.assets] == [
      (a.scene, a.index, a.instance_id, a.removed) for a in edit.assets]
  # The tokenizer batch of the loaded edit is that of the original (same runs, same slots).
  want = editing.build_token_plan([edit], fx.MAX_OBJECTS)
  got = editing.build_token_plan([loaded], fx.MAX_OBJECTS)
  for key in want[0]:
    np.testing.assert_allclose(got[0][key], want[0][key], atol=1e-6)
  for a, b in zip(got[1:], want[1:]):
    np.testing.assert_array_equal(a, b)
  scene_path = str(tmp_path / "scene.npz")
  scene.save(scene_path)
  assert isinstance(editing.load_scene_or_edit(scene_path), editing.Scene)
  with pytest.raises(ValueError, match="edited-scene file"):
    editing.Scene.load(path)
  with pytest.raises(ValueError, match="not an edit file"):
    editing.Edit.load(scene_path)


def test_scene_subset(scene):
  sub = scene.subset([2, 0])
  assert sub.num_objects == 2
  np.testing.assert_array_equal(sub.instance_ids, [2, 0])
  np.testing.assert_array_equal(sub.corners_world(), scene.corners_world()[[2, 0]])
  np.testing.assert_array_equal(sub.image, scene.image)
  with pytest.raises(ValueError, match="out of range"):
    scene.subset([4])


def test_scene_keep_largest(scene):
  boxes = scene.boxes_2d
  area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
  order = scene.largest_first()
  assert sorted(order) == list(range(scene.num_objects))
  assert all(area[a] >= area[b] for a, b in zip(order, order[1:]))
  kept = scene.keep_largest(2)
  np.testing.assert_array_equal(kept.instance_ids, scene.instance_ids[np.sort(order[:2])])
  assert scene.keep_largest(scene.num_objects) is scene


def test_scene_rejects_bad_inputs(scene):
  kwargs = {name: getattr(scene, name) for name in editing.SCENE_ARRAYS}
  with pytest.raises(ValueError, match="uint8"):
    editing.Scene(**{**kwargs, "image": scene.image.astype(np.float32)})
  with pytest.raises(ValueError, match="proper rotations"):
    editing.Scene(**{**kwargs, "rotations": scene.rotations * 2})
  with pytest.raises(ValueError, match="sizes must be positive"):
    editing.Scene(**{**kwargs, "sizes": -scene.sizes})


# ------------------------------------------------------------------------------------------------
# Edit geometry.


def test_translate_world_and_camera_axes(scene):
  edit = editing.translate(scene, 0, (0.3, -0.1, 0.5))
  np.testing.assert_allclose(edit.corners_world()[0], scene.corners_world()[0] + [0.3, -0.1, 0.5],
                             atol=1e-6)
  np.testing.assert_allclose(edit.corners_world()[1:], scene.corners_world()[1:])
  expected = pinhole(to_camera(scene.world_to_camera, scene.corners_world()[0] + [0.3, -0.1, 0.5]),
                     scene.intrinsics)
  np.testing.assert_allclose(edit.target_corners()[0], expected, atol=1e-5)

  # A camera whose axes are not the world's: camera-axis offsets act in camera coordinates.
  turned = editing.move_camera(scene, yaw=20.0)
  moved = editing.translate(turned, 1, (0.2, 0.0, 0.4), frame="camera")
  cam_before = to_camera(turned.world_to_camera, turned.corners_world()[1])
  cam_after = to_camera(moved.world_to_camera, moved.corners_world()[1])
  np.testing.assert_allclose(cam_after - cam_before, np.broadcast_to([0.2, 0.0, 0.4], (8, 3)),
                             atol=1e-5)
  np.testing.assert_allclose(moved.target_corners()[1], pinhole(cam_after, scene.intrinsics),
                             atol=1e-5)
  assert not np.allclose(moved.corners_world()[1] - turned.corners_world()[1], [0.2, 0.0, 0.4])


def test_rotate_turns_about_own_axes_keeping_center_and_size(scene):
  edit = editing.rotate(scene, 1, yaw=90)
  asset, before = edit.assets[1], scene
  np.testing.assert_allclose(asset.center, before.centers[1])
  np.testing.assert_allclose(asset.size, before.sizes[1])
  fx.assert_rotation(asset.rotation)
  # Yaw 90 about own z: the new own x axis is the old own y axis (rotation columns).
  np.testing.assert_allclose(asset.rotation[:, 0], before.rotations[1][:, 1], atol=1e-6)
  # The x edge (p4 - p0) now points along old +y with the x length.
  edge = edit.corners_world()[1, 4] - edit.corners_world()[1, 0]
  np.testing.assert_allclose(edge, before.sizes[1, 0] * before.rotations[1][:, 1], atol=1e-5)
  # Pitch and roll turn about own y and x; a full turn is the identity.
  pitched = editing.rotate(scene, 1, pitch=90).assets[1].rotation
  np.testing.assert_allclose(pitched[:, 2], before.rotations[1][:, 0], atol=1e-6)
  rolled = editing.rotate(scene, 1, roll=90).assets[1].rotation
  np.testing.assert_allclose(rolled[:, 1], before.rotations[1][:, 2], atol=1e-6)
  full = editing.rotate(scene, 1, yaw=360, pitch=360, roll=360).assets[1].rotation
  np.testing.assert_allclose(full, before.rotations[1], atol=1e-5)
  # A 180 degree yaw maps the box onto itself: same corner set.
  turned = editing.rotate(scene, 1, yaw=180).corners_world()[1]
  np.testing.assert_allclose(np.sort(turned, axis=0), np.sort(scene.corners_world()[1], axis=0),
                             atol=1e-5)


def test_rescale(scene):
  edit = editing.rescale(scene, 2, 1.5)
  np.testing.assert_allclose(edit.assets[2].size, scene.sizes[2] * 1.5, rtol=1e-6)
  np.testing.assert_allclose(edit.assets[2].center, scene.centers[2])
  offsets = edit.corners_world()[2] - scene.centers[2]
  np.testing.assert_allclose(offsets, 1.5 * (scene.corners_world()[2] - scene.centers[2]),
                             atol=1e-6)
  per_axis = editing.rescale(scene, 2, (1.0, 2.0, 0.5))
  np.testing.assert_allclose(per_axis.assets[2].size, scene.sizes[2] * [1.0, 2.0, 0.5], rtol=1e-6)
  with pytest.raises(editing.EditError, match="positive"):
    editing.rescale(scene, 2, 0.0)


def test_remove_and_duplicate_bookkeeping(scene):
  edit = editing.remove(scene, 2)
  assert edit.assets[2].removed and edit.active().tolist() == [True, True, False, True]
  with pytest.raises(editing.EditError, match="removed"):
    editing.translate(edit, 2, (1, 0, 0))
  with pytest.raises(editing.EditError, match="No object 7"):
    editing.remove(scene, 7)
  dup = editing.duplicate(scene, 1, offset=(0.5, 0.0, 1.0))
  assert len(dup.assets) == 5
  copy = dup.assets[4]
  assert (copy.scene, copy.index) == (0, 1) and copy.instance_id == 4
  np.testing.assert_allclose(copy.center, scene.centers[1] + [0.5, 0.0, 1.0])
  np.testing.assert_allclose(copy.size, scene.sizes[1])
  np.testing.assert_allclose(copy.rotation, scene.rotations[1])
  # The copy reads its appearance from the source box of object 1.
  batch, run_index, slot_index, valid = editing.build_token_plan([dup], fx.MAX_OBJECTS)
  np.testing.assert_array_equal(batch["source_boxes"][run_index[0, 4], slot_index[0, 4]],
                                scene.boxes_2d[1])
  np.testing.assert_allclose(batch["target_corners"][run_index[0, 4], slot_index[0, 4]],
                             dup.target_corners()[4])
  assert valid[0].tolist() == [True] * 5 + [False] + [True]


def test_camera_change_recomputes_projections(scene):
  edit = editing.move_camera(scene, offset=(0.3, -0.1, 0.2), yaw=6.0, pitch=-3.0)
  c2w_old = geometry.invert_pose(scene.world_to_camera)
  local = geometry.pose_matrix(editing.euler_rotation(6.0, -3.0, 0.0, (1, 0, 2)),
                               np.array([0.3, -0.1, 0.2]))
  w2c = np.linalg.inv(c2w_old @ local)
  np.testing.assert_allclose(edit.world_to_camera, w2c, atol=1e-5)
  expected = pinhole(to_camera(w2c, scene.corners_world()), scene.intrinsics)
  np.testing.assert_allclose(edit.target_corners(), expected, atol=1e-5)
  batch, _, _, _ = editing.build_token_plan([edit], fx.MAX_OBJECTS)
  np.testing.assert_allclose(batch["target_corners"][0, :4], expected, atol=1e-5)
  np.testing.assert_allclose(batch["relative_pose"][0], w2c @ np.linalg.inv(scene.world_to_camera),
                             atol=1e-5)
  # The objects stay where they are in the world.
  np.testing.assert_allclose(edit.corners_world(), scene.corners_world())
  # Orbiting keeps the camera's distance to the pivot.
  pivot = scene.centers.mean(axis=0)
  orbit = editing.orbit_camera(scene, 10.0)
  position = lambda w2c: geometry.invert_pose(w2c)[:3, 3]
  np.testing.assert_allclose(np.linalg.norm(position(orbit.world_to_camera) - pivot),
                             np.linalg.norm(position(scene.world_to_camera) - pivot), rtol=1e-5)
  assert not np.allclose(position(orbit.world_to_camera), position(scene.world_to_camera))


def test_insert_default_pose_keeps_the_camera_relative_pose(scene, other):
  edit = editing.insert(scene, other, 2)
  assert len(edit.scenes) == 2 and edit.assets[-1].scene == 1 and edit.assets[-1].index == 2
  np.testing.assert_allclose(edit.target_corners()[-1], other.projected_corners()[2], atol=1e-4)
  moved = editing.insert(scene, other, 2, offset=(0.0, 0.0, 1.0))
  np.testing.assert_allclose(moved.assets[-1].center, edit.assets[-1].center + [0, 0, 1],
                             atol=1e-6)
  # Inserting twice from the same scene reuses its entry.
  twice = editing.insert(edit, other, 0)
  assert len(twice.scenes) == 2 and twice.assets[-1].scene == 1


def test_invalid_edits_are_refused_unless_allowed(scene):
  with pytest.raises(editing.EditError, match="object 0 would be behind the camera"):
    editing.translate(scene, 0, (0.0, 0.0, -10.0))
  with pytest.raises(editing.EditError, match="object 1 would be fully off-screen"):
    editing.translate(scene, 1, (30.0, 0.0, 0.0))
  with pytest.raises(editing.EditError, match="allow_invalid=True"):
    editing.duplicate(scene, 1, offset=(0.0, 30.0, 0.0))
  with pytest.raises(editing.EditError, match="behind the camera"):
    editing.move_camera(scene, offset=(0.0, 0.0, 5.5))
  with pytest.raises(editing.EditError, match="off-screen"):
    editing.move_camera(scene, yaw=60.0)
  forced = editing.translate(scene, 0, (0.0, 0.0, -10.0), allow_invalid=True)
  valid, reason = forced.validity()
  assert not valid[0] and reason[0] == geometry.BoxStatus.BEHIND_CAMERA
  assert forced.active().tolist() == [False, True, True, True]
  _, _, _, slot_valid = editing.build_token_plan([forced], fx.MAX_OBJECTS)
  assert slot_valid[0].tolist() == [True, True, True, False, False, False, True]


# ------------------------------------------------------------------------------------------------
# Tokens.


def _slots(bundle, tokens):
  """[E, (N+1)*T, D] -> [E, N+1, T, D] numpy."""
  tokens = np.asarray(tokens)
  return tokens.reshape(tokens.shape[0], fx.MAX_OBJECTS + 1, bundle.tokens_per_slot, -1)


def test_reconstruction_tokens_equal_a_training_batch(bundle, scene):
  n = fx.MAX_OBJECTS
  boxes = np.zeros((1, n, 4), np.float32)
  corners = np.zeros((1, n, 8, 3), np.float32)
  mask = np.zeros((1, n), bool)
  boxes[0, :4], corners[0, :4], mask[0, :4] = scene.boxes_2d, scene.projected_corners(), True
  batch = dict(source_image=scene.image[None], source_boxes=boxes, target_corners=corners,
               slot_mask=mask, relative_pose=np.eye(4, dtype=np.float32)[None])
  expected = np.asarray(bundle.tokenize_fn(bundle.params, batch))
  got = np.asarray(editing.compose_tokens(bundle, [editing.as_edit(scene)]))
  np.testing.assert_allclose(got, expected, atol=1e-5)
  assert np.abs(got).max() > 0


def test_token_splicing_remove_duplicate_insert_background(bundle, scene, other):
  base = _slots(bundle, editing.compose_tokens(bundle, [editing.as_edit(scene)]))[0]
  base_other = _slots(bundle, editing.compose_tokens(bundle, [editing.as_edit(other)]))[0]
  edits = [editing.remove(scene, 1), editing.duplicate(scene, 2),
           editing.insert(scene, other, 2), editing.replace_background(scene, other)]
  removed, dup, inserted, background = _slots(bundle, editing.compose_tokens(bundle, edits))
  atol = 1e-5
  # Remove: the other objects' tokens are unchanged (the removed one stays painted out of the
  # background, so nothing else moves) and the slot is masked.
  np.testing.assert_allclose(removed[[0, 1, 2]], base[[0, 2, 3]], atol=atol)
  np.testing.assert_array_equal(removed[3:fx.MAX_OBJECTS], 0.0)
  np.testing.assert_allclose(removed[-1], base[-1], atol=atol)
  # Duplicate at the same pose: the copy's tokens are the original's.
  np.testing.assert_allclose(dup[4], base[2], atol=atol)
  np.testing.assert_allclose(dup[:4], base[:4], atol=atol)
  # Insert: the new slot holds the other scene's tokens of that object (same projection).
  np.testing.assert_allclose(inserted[4], base_other[2], atol=1e-4)
  assert not np.allclose(inserted[4], base[2], atol=1e-3)
  np.testing.assert_allclose(inserted[:4], base[:4], atol=atol)
  # Background swap: the last slot is the other scene's background token, objects unchanged.
  np.testing.assert_allclose(background[-1], base_other[-1], atol=atol)
  assert not np.allclose(background[-1], base[-1], atol=1e-3)
  np.testing.assert_allclose(background[:-1], base[:-1], atol=atol)


def test_too_many_objects_is_an_error(scene):
  edit = editing.as_edit(scene)
  for _ in range(fx.MAX_OBJECTS - scene.num_objects + 1):
    edit = editing.duplicate(edit, 0, offset=(0.0, 0.0, 0.1))
  with pytest.raises(editing.EditError, match="slots"):
    editing.build_token_plan([edit], fx.MAX_OBJECTS)


# ------------------------------------------------------------------------------------------------
# Rendering and loading.


def test_render_end_to_end(bundle, scene, other):
  edits = [editing.rotate(scene, 1, yaw=90), editing.insert(scene, other, 0)]
  images = editing.render(bundle, scene, *edits, seed=0, num_variations=2)
  assert images.shape == (2, 2, fx.RESOLUTION, fx.RESOLUTION, 3) and images.dtype == np.uint8
  again = editing.render(bundle, scene, *edits, seed=0, num_variations=2)
  np.testing.assert_array_equal(images, again)
  other_seed = editing.render(bundle, scene, *edits, seed=1, num_variations=2)
  assert np.mean(images != other_seed) > 0.5
  assert np.mean(images[:, 0] != images[:, 1]) > 0.5  # Variations differ.
  assert images.std() > 1.0  # Not a constant image.
  with pytest.raises(editing.EditError, match="not made from the scene"):
    editing.render(bundle, other, *edits)


def test_load_model_errors(workdir, tmp_path):
  with pytest.raises(FileNotFoundError, match="No checkpoint"):
    editing.load_model_for_inference(str(tmp_path))
  with pytest.raises(FileNotFoundError, match="step 5"):
    editing.load_model_for_inference(workdir, step=5)
  config = fx.tiny_config()
  config.model.conditioning.pose_hidden_dim = 24
  with pytest.raises(ValueError, match="pose_encoder"):
    editing.load_model_for_inference(workdir, config=config)
  step_dir, step = editing.find_checkpoint(os.path.join(workdir, "checkpoints", "0"))
  assert step == 0 and step_dir.endswith(os.path.join("checkpoints", "0"))
  # The demo's layout: WORKDIR/train is the training workdir.
  demo = tmp_path / "demo"
  demo.mkdir()
  os.symlink(workdir, demo / "train")
  assert editing.find_checkpoint(str(demo)) == (os.path.join(str(demo), "train", "checkpoints",
                                                             "0"), 0)



def test_with_weights_shares_the_compiled_pieces_and_refuses_another_config(bundle):
  from neural_assets import inference  # pylint: disable=g-import-not-at-top
  other = inference.ModelBundle(bundle.config, bundle.params, bundle.vae_params, step=7)
  swapped = bundle.with_weights(other)
  assert swapped.step == 7 and bundle.step == 0 and swapped.params is other.params
  assert swapped.denoise_fn is bundle.denoise_fn and swapped.tokenize_fn is bundle.tokenize_fn
  config = fx.tiny_config()
  config.sampler.guidance_scale = 9.0
  with pytest.raises(ValueError, match="configs differ"):
    bundle.with_weights(inference.ModelBundle(config, bundle.params, bundle.vae_params))

# ------------------------------------------------------------------------------------------------
# CLI.


def test_cli_writes_each_edit_and_a_grid(workdir, scene, other, tmp_path, capsys):
  scene_path, other_path = str(tmp_path / "a.npz"), str(tmp_path / "b.npz")
  scene.save(scene_path)
  other.save(other_path)
  out = tmp_path / "out"
  ops = ["rotate 1 yaw=90", "translate 0 x=0.2; remove 2", "insert 0 z=0.5", "background",
         "camera yaw=3 orbit=5"]
  argv = ["--checkpoint", workdir, "--scene", scene_path, "--other_scene", other_path,
          "--out_dir", str(out), "--num_steps", "2", "--seed", "3", "--num_variations", "2"]
  for op in ops:
    argv += ["--op", op]
  assert edit_cli.main(argv) == 0
  names = sorted(os.listdir(out))
  assert "grid.png" in names and "source.png" in names
  assert len([n for n in names if n.startswith("edit_")]) == len(ops) * 2
  assert "edit_00_rotate_1_yaw=90_v1.png" in names
  grid = np.asarray(Image.open(out / "grid.png"))
  size = fx.RESOLUTION
  assert grid.shape == (2 * (size + 2) - 2, 6 * (size + 2) - 2, 3)
  first = np.asarray(Image.open(out / "edit_00_rotate_1_yaw=90_v0.png"))
  np.testing.assert_array_equal(grid[:size, size + 2:2 * size + 2], first)
  assert "Wrote 10 edit image(s)" in capsys.readouterr().out


@pytest.mark.parametrize("op,message", [
    ("rotate 1 yawn=90", "unknown key"),
    ("frobnicate 1", "unknown operation"),
    ("translate one x=1", "not an integer"),
    ("translate 0 z=-50", "behind the camera"),
    ("remove 9", "No object 9"),
    ("insert 0", "needs --other_scene"),
    ("rescale 1 2 x=3", "either one factor"),
])
def test_cli_parse_errors_name_the_op(scene, op, message):
  with pytest.raises(op_grammar.OpParseError, match=message) as info:
    op_grammar.build_edit(scene, "rotate 0 yaw=10; " + op)
  assert op in str(info.value)


def test_cli_refusal_names_the_cli_override(scene):
  with pytest.raises(op_grammar.OpParseError, match="behind the camera") as info:
    op_grammar.build_edit(scene, "translate 0 z=-50")
  assert "force=1" in str(info.value) and "allow_invalid" not in str(info.value)
  forced = op_grammar.build_edit(scene, "translate 0 z=-50 force=1")
  assert forced.active().tolist() == [False, True, True, True]


def test_cli_renders_an_edited_scene_file(workdir, scene, other, tmp_path):
  edit = editing.rotate(editing.insert(scene, other, 0), 1, yaw=90)
  path = str(tmp_path / "edited.npz")
  edit.save(path)
  out = tmp_path / "out"
  argv = ["--checkpoint", workdir, "--scene", path, "--out_dir", str(out), "--num_steps", "2",
          "--op", "reconstruct", "--op", "remove 4"]
  assert edit_cli.main(argv) == 0
  # The file's edit renders exactly as rendering the edit in memory does.
  bundle = editing.load_model_for_inference(workdir)
  want = editing.render(bundle, scene, edit, editing.remove(edit, 4), num_steps=2, seed=0)
  for k, name in enumerate(["edit_00_reconstruct.png", "edit_01_remove_4.png"]):
    np.testing.assert_array_equal(np.asarray(Image.open(out / name)), want[k, 0])
  np.testing.assert_array_equal(np.asarray(Image.open(out / "source.png")), scene.image)


def test_cli_bad_op_exits_before_loading(scene, tmp_path, capsys):
  scene_path = str(tmp_path / "a.npz")
  scene.save(scene_path)
  with pytest.raises(SystemExit) as info:
    edit_cli.main(["--checkpoint", str(tmp_path / "missing"), "--scene", scene_path,
                   "--out_dir", str(tmp_path / "o"), "--op", "rotate 1 yawn=90"])
  assert info.value.code == 2
  assert "rotate 1 yawn=90" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["truncated", "flipped", "garbage", "empty", "missing"])
def test_damaged_scene_file_is_one_line_naming_it(scene, tmp_path, capsys, damage):
  path = tmp_path / "scene.npz"
  scene.save(str(path))
  data = path.read_bytes()
  damaged = {"truncated": data[:len(data) // 2], "garbage": b"\x13" * 200, "empty": b"",
             # A flipped byte inside the first member's data: the zip CRC check catches it.
             "flipped": data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]}
  if damage == "missing":
    path.unlink()
  else:
    path.write_bytes(damaged[damage])
  with pytest.raises(ValueError) as info:
    editing.Scene.load(str(path))
  assert str(path) in str(info.value) and "\n" not in str(info.value)
  with pytest.raises(SystemExit) as exit_info:
    edit_cli.main(["--checkpoint", str(tmp_path / "missing"), "--scene", str(path),
                   "--out_dir", str(tmp_path / "o"), "--op", "remove 0"])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  error_lines = [line for line in err.splitlines() if "error:" in line]
  assert len(error_lines) == 1 and str(path) in error_lines[0], err
  assert "Traceback" not in err


@pytest.mark.parametrize("flag,value,message", [
    ("--guidance_scale", "nan", "nan is not a finite number >= 0"),
    ("--guidance_scale", "-1", "-1 is not a finite number >= 0"),
    ("--num_steps", "0", "0 is not an integer >= 1"),
    ("--num_variations", "-2", "-2 is not an integer >= 1"),
    ("--step", "-1", "-1 is not an integer >= 0"),
])
def test_cli_numbers_are_checked_at_parse_time(scene, tmp_path, capsys, flag, value, message):
  scene_path = str(tmp_path / "a.npz")
  scene.save(scene_path)
  with pytest.raises(SystemExit) as info:
    edit_cli.main(["--checkpoint", str(tmp_path / "missing"), "--scene", scene_path,
                   "--out_dir", str(tmp_path / "o"), "--op", "remove 0", flag, value])
  assert info.value.code == 2
  assert f"argument {flag}: {message}" in capsys.readouterr().err
