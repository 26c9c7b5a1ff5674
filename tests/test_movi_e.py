"""MOVi-E reader: a tiny dataset in the real TFDS format (Kubric's feature spec) is written, read
back and converted; the 3D boxes, projected with the converted cameras, must land on the boxes of
segmentation masks drawn independently with Kubric's own projection formula."""
import io
import itertools

import numpy as np
import pytest
from PIL import Image
from scipy.spatial import ConvexHull
from scipy.spatial.transform import Rotation
from skimage.draw import polygon

from data_pipelines import movi_e
from data_pipelines import video_record
from neural_assets import geometry

SIZE, FRAMES = 32, 4
FOCAL, SENSOR = 35.0, 32.0


def _blender_look_at(position, target):
  """Blender camera-to-world rotation (-Z looks at target, +Y up), built independently."""
  forward = (target - position) / np.linalg.norm(target - position)
  right = np.cross(forward, [0, 0, 1.0])
  right /= np.linalg.norm(right)
  up = np.cross(right, forward)
  return np.stack([right, up, -forward], axis=-1)


def _kubric_project(point_world, cam_rot, cam_pos):
  """Kubric's `Camera.project_point` (kubric/core/cameras.py) with width = height = 1."""
  c2w = np.eye(4)
  c2w[:3, :3], c2w[:3, 3] = cam_rot, cam_pos
  fx = fy = FOCAL / SENSOR
  k = np.array([[fx, 0, -0.5], [0, -fy, -0.5], [0, 0, -1.0]])
  p = k @ (np.linalg.inv(c2w) @ np.append(point_world, 1.0))[:3]
  return p[:2] / p[2]


def _known_example(video_index):
  """A MOVi-E example (decoded layout) with 2 box objects; object 1 leaves the view."""
  rng = np.random.default_rng(video_index)
  sizes = np.array([[1.0, 1.5, 0.8], [0.6, 0.6, 0.6]])
  yaw = rng.uniform(0, np.pi, 2)
  bboxes_3d = np.zeros((2, FRAMES, 8, 3), np.float32)
  obj_pos = np.zeros((2, FRAMES, 3), np.float32)
  obj_quat = np.zeros((2, FRAMES, 4), np.float32)
  cam_pos = np.zeros((FRAMES, 3), np.float32)
  cam_quat = np.zeros((FRAMES, 4), np.float32)
  seg = np.zeros((FRAMES, SIZE, SIZE, 1), np.uint8)
  video = np.full((FRAMES, SIZE, SIZE, 3), 90, np.uint8)
  colors = np.array([[200, 30, 30], [30, 200, 30]], np.uint8)
  for t in range(FRAMES):
    position = np.array([6.0 + 0.3 * t, -4.0 + 0.5 * video_index, 4.0])
    rot = _blender_look_at(position, np.zeros(3))
    cam_pos[t] = position
    x, y, z, w = Rotation.from_matrix(rot).as_quat()
    cam_quat[t] = [w, x, y, z]
    centers = [np.array([0.2 * t, 0.0, 0.4]),  # moves, stays in view.
               np.array([-2.0, 2.0, 0.3]) + t * np.array([2.0, 3.0, 0.0])]  # leaves the view.
    for k in (1, 0):  # object 0 drawn last; they never overlap in these views.
      obj_rot = Rotation.from_euler("z", yaw[k] + 0.2 * t)
      bounds = np.stack([-sizes[k] / 2, sizes[k] / 2])
      # Kubric's PhysicalObject.bbox_3d: itertools.product over the x, y, z bounds.
      corners = [centers[k] + obj_rot.apply(c) for c in itertools.product(*bounds.T)]
      bboxes_3d[k, t] = corners
      obj_pos[k, t] = centers[k]
      ox, oy, oz, ow = obj_rot.as_quat()
      obj_quat[k, t] = [ow, ox, oy, oz]
      uv = np.array([_kubric_project(c, rot, position) for c in corners]) * SIZE
      hull = uv[ConvexHull(uv).vertices]
      rr, cc = polygon(hull[:, 1] - 0.5, hull[:, 0] - 0.5, shape=(SIZE, SIZE))
      seg[t, rr, cc, 0] = k + 1
      video[t, rr, cc] = colors[k]
  visibility = np.stack([(seg[..., 0] == k + 1).sum(axis=(1, 2)) for k in range(2)])
  def zeros(*shape):
    return np.zeros(shape, np.float32)
  return {
      "metadata": {"video_name": f"video_{video_index}".encode(), "width": np.int32(SIZE),
                   "height": np.int32(SIZE), "num_frames": np.int32(FRAMES),
                   "num_instances": np.uint16(2), "depth_range": np.array([1, 20], np.float32),
                   "forward_flow_range": zeros(2), "backward_flow_range": zeros(2)},
      "background": b"white_studio",
      "camera": {"focal_length": np.float32(FOCAL), "sensor_width": np.float32(SENSOR),
                 "field_of_view": np.float32(2 * np.arctan2(SENSOR / 2, FOCAL)),
                 "positions": cam_pos, "quaternions": cam_quat},
      "instances": {
          "mass": np.ones(2, np.float32), "friction": np.full(2, 0.5, np.float32),
          "restitution": np.full(2, 0.5, np.float32), "positions": obj_pos,
          "quaternions": obj_quat, "velocities": zeros(2, FRAMES, 3),
          "angular_velocities": zeros(2, FRAMES, 3), "bboxes_3d": bboxes_3d,
          "image_positions": zeros(2, FRAMES, 2),
          "bboxes": [np.zeros((0, 4), np.float32)] * 2,
          "bbox_frames": [np.zeros((0,), np.int32)] * 2,
          "visibility": visibility.astype(np.uint16),
          "asset_id": np.array([b"Box_A", b"Box_B"], dtype=object),
          "category": np.array([14, 3]), "scale": np.ones(2, np.float32),
          "is_dynamic": np.array([False, True])},
      "events": {"collisions": [{
          "instances": np.array([0, 65535], np.uint16), "frame": 1, "force": 2.0,
          "position": zeros(3), "image_position": zeros(2), "contact_normal": zeros(3)}]},
      "video": video,
      "segmentations": seg,
      "depth": np.zeros((FRAMES, SIZE, SIZE, 1), np.uint16),
      "forward_flow": np.zeros((FRAMES, SIZE, SIZE, 2), np.uint16),
      "backward_flow": np.zeros((FRAMES, SIZE, SIZE, 2), np.uint16),
      "normal": np.zeros((FRAMES, SIZE, SIZE, 3), np.uint16),
      "object_coordinates": np.zeros((FRAMES, SIZE, SIZE, 3), np.uint16),
  }


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp("tfds")
  examples = [_known_example(i) for i in range(2)]
  movi_e.write_tfds(str(data_dir), {"train": examples}, SIZE, SIZE, FRAMES)
  return str(data_dir), examples


def test_reads_real_tfds_format(tfds_dir):
  data_dir, examples = tfds_dir
  got = list(movi_e.read_tfds(data_dir, "train", config=f"{SIZE}x{SIZE}"))
  assert len(got) == 2
  for ex, want in zip(got, examples):
    assert ex["video"].shape == (FRAMES, SIZE, SIZE, 3) and ex["video"].dtype == np.uint8
    np.testing.assert_array_equal(ex["video"], want["video"])
    np.testing.assert_array_equal(ex["segmentations"], want["segmentations"])
    np.testing.assert_allclose(ex["instances"]["bboxes_3d"], want["instances"]["bboxes_3d"])
    np.testing.assert_allclose(ex["camera"]["quaternions"], want["camera"]["quaternions"])
    assert ex["metadata"]["video_name"] == want["metadata"]["video_name"]
    np.testing.assert_array_equal(ex["instances"]["category"], [14, 3])


def test_geometry_projects_onto_mask_boxes(tfds_dir):
  data_dir, examples = tfds_dir
  for ex, want in zip(movi_e.read_tfds(data_dir, "train", config=f"{SIZE}x{SIZE}"), examples):
    record = movi_e.example_to_video_record(ex)
    assert video_record.validate(record) == (FRAMES, 2)
    assert record["video_id"] == want["metadata"]["video_name"]
    np.testing.assert_array_equal(record["category"], [14, 3])
    f = FOCAL / SENSOR
    np.testing.assert_allclose(record["intrinsics"][0], [[f, 0, 0.5], [0, f, 0.5], [0, 0, 1]],
                               atol=1e-6)
    for t, frame in enumerate(record["frames"]):
      np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(frame))), want["video"][t])
    # Object 0 is always visible; object 1 leaves the view after frame 0.
    assert record["visible"][:, 0].all()
    assert record["visible"][0, 1] and not record["visible"][-1, 1]
    np.testing.assert_array_equal(record["boxes_2d"][~record["visible"]], 0.0)
    uvd = geometry.project_box(record["box_corners_world"], record["world_to_camera"][:, None],
                               record["intrinsics"][:, None])
    projected = geometry.box2d_from_corners(uvd)
    vis = record["visible"]
    # The mask is the rasterised hull of the same corners: boxes agree to within a pixel.
    np.testing.assert_allclose(projected[vis], record["boxes_2d"][vis], atol=1.0 / SIZE)
    valid, _ = geometry.box_validity(uvd)
    assert valid[:, 0].all()
    # Depth is the distance along the camera's viewing direction (Blender: -z_cam).
    cam_to_world = np.eye(4)
    cam_to_world[:3, :3] = Rotation.from_quat(
        np.roll(want["camera"]["quaternions"][0], -1)).as_matrix()
    cam_to_world[:3, 3] = want["camera"]["positions"][0]
    corner = want["instances"]["bboxes_3d"][0, 0, 5]
    z_blender = (np.linalg.inv(cam_to_world) @ np.append(corner, 1))[2]
    assert uvd[0, 0, 5, 2] == pytest.approx(-z_blender, rel=1e-5)
    # Corner 4 is (x1, y0, z0): Kubric's order is the canonical one (no reordering).
    corner4 = want["instances"]["bboxes_3d"][0, 0, 4]
    np.testing.assert_allclose(
        uvd[0, 0, 4, :2], _kubric_project(corner4, cam_to_world[:3, :3], cam_to_world[:3, 3]),
        atol=1e-5)


def test_cli_writes_array_record_shards(tfds_dir, tmp_path):
  data_dir, examples = tfds_dir
  out_dir = tmp_path / "records"
  movi_e.main(["--tfds_dir", data_dir, "--out_dir", str(out_dir), "--split", "train",
               "--config", f"{SIZE}x{SIZE}", "--records_per_shard", "1"])
  shards = sorted(p.name for p in out_dir.iterdir())
  assert shards == ["train.array_record-00000-of-00002", "train.array_record-00001-of-00002"]
  (record,) = video_record.read_array_record(str(out_dir / shards[1]))
  assert record["video_id"] == examples[1]["metadata"]["video_name"]
  np.testing.assert_allclose(record["box_corners_world"],
                             np.swapaxes(examples[1]["instances"]["bboxes_3d"], 0, 1))


def test_bad_inputs_raise():
  seg = np.zeros((1, 4, 4, 1), np.uint8)
  seg[0, 1, 1] = 3
  with pytest.raises(ValueError, match="only 2 instances"):
    movi_e.boxes_from_segmentation(seg, num_objects=2)
  ex = _known_example(0)
  ex["camera"]["positions"] = ex["camera"]["positions"][:2]
  with pytest.raises(ValueError, match="camera/positions"):
    movi_e.example_to_video_record(ex)
  with pytest.raises(FileNotFoundError):
    movi_e.find_dataset_dir("/nonexistent", "256x256")


def test_boxes_from_segmentation_pixel_edges():
  seg = np.zeros((2, 8, 16), np.uint8)
  seg[0, 2:5, 3:9] = 1
  boxes, visible, counts = movi_e.boxes_from_segmentation(seg, num_objects=2)
  np.testing.assert_allclose(boxes[0, 0], [2 / 8, 3 / 16, 5 / 8, 9 / 16])
  np.testing.assert_array_equal(visible, [[True, False], [False, False]])
  assert counts[0, 0] == 18
