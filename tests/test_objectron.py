"""Objectron reader: tiny sequences tfrecords in the released schema, boxes at known places.

The 2D keypoints stored in the synthetic file are made the way Objectron's tooling makes them
(OpenGL projection matrix @ view matrix -> NDC -> the upright frame as in
`notebooks/objectron-geometry-tutorial.ipynb`), independently of the reader's pinhole conversion,
so the tests fail if the reader's intrinsics / camera axes / corner order are wrong.
"""
import io
import os

import numpy as np
import pytest
from PIL import Image

from data_pipelines import objectron
from data_pipelines import video_record
from neural_assets import geometry

tf = pytest.importorskip("tensorflow")

CAPTURE_W, CAPTURE_H = 1920, 1440  # landscape capture the ARKit intrinsics refer to
FX, FY, CX, CY = 1480.0, 1500.0, 950.0, 730.0  # fx != fy, off-centre principal point
# Objectron unit-box keypoints (objectron/dataset/box.py): centre, then (-,-,-), (-,-,+), ...
UNIT_KEYPOINTS = np.array([[0, 0, 0]] + [[sx, sy, sz] for sx in (-.5, .5) for sy in (-.5, .5)
                                         for sz in (-.5, .5)])


def _rot_y(angle):
  c, s = np.cos(angle), np.sin(angle)
  return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _look_at_arkit(position, target):
  """ARKit camera-to-world for a phone held upright (portrait) looking at `target`.

  ARKit camera axes: x right / y up of the landscape capture, looking along -z. Held upright, the
  capture's +x points down in the world.
  """
  f = target - position
  f = f / np.linalg.norm(f)
  z = -f
  down = np.array([0.0, -1.0, 0.0])
  x = down - down.dot(f) * f
  x = x / np.linalg.norm(x)
  y = np.cross(z, x)
  pose = np.eye(4)
  pose[:3, :3] = np.stack([x, y, z], axis=1)
  pose[:3, 3] = position
  return pose


def _gl_projection(near=0.05, far=100.0):
  """ARKit-style OpenGL projection matrix of the landscape capture camera."""
  return np.array([
      [2 * FX / CAPTURE_W, 0, 1 - 2 * CX / CAPTURE_W, 0],
      [0, 2 * FY / CAPTURE_H, 2 * CY / CAPTURE_H - 1, 0],
      [0, 0, -(far + near) / (far - near), -2 * far * near / (far - near)],
      [0, 0, -1, 0]])


def _ndc_to_frame(ndc, layout):
  """NDC of the capture camera -> normalised (u, v) of the stored frame."""
  x, y = ndc[..., 0], ndc[..., 1]
  if layout == "portrait_cw":  # the geometry tutorial's project_points
    return np.stack([(1 + y) / 2, (1 + x) / 2], -1)
  if layout == "portrait_cw_cy":  # the parsing notebook: principal point cy instead of H - cy
    return np.stack([(1 + y) / 2 - 1 + 2 * CY / CAPTURE_H, (1 + x) / 2], -1)
  if layout == "portrait_ccw":
    return np.stack([(1 - y) / 2, (1 - x) / 2], -1)
  return np.stack([(1 + x) / 2, (1 - y) / 2], -1)  # landscape


def _jpeg(width, height, seed):
  rng = np.random.default_rng(seed)
  buf = io.BytesIO()
  Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(buf, "JPEG")
  return buf.getvalue()


OBJECTS = [  # (category name, centre, size, rotation about world y)
    ("book", np.array([0.0, 0.15, 0.0]), np.array([0.3, 0.2, 0.1]), np.deg2rad(30)),
    ("cup", np.array([0.22, 0.1, 0.1]), np.array([0.1, 0.2, 0.12]), np.deg2rad(-10)),
]


def make_scene(layout="portrait_cw"):
  """Three frames: both objects seen; B not annotated; camera turned away from everything."""
  target = np.array([0.05, 0.1, 0.0])
  poses = [_look_at_arkit(np.array([0.1, 0.6, 1.2]), target),
           _look_at_arkit(_rot_y(np.deg2rad(25)) @ np.array([0.1, 0.6, 1.2]), target)]
  away = _look_at_arkit(np.array([0.1, 0.6, 1.2]), np.array([0.1, 0.6, 3.0]))
  poses.append(away)
  instance_num = [2, 1, 2]
  visibility = [[0.9, 0.8], [0.9], [0.7, 0.6]]
  world_kp = np.stack([_rot_y(yaw) @ (UNIT_KEYPOINTS * size).T + center[:, None]
                       for _, center, size, yaw in OBJECTS]).transpose(0, 2, 1)  # [K, 9, 3]
  width, height = (48, 64) if layout.startswith("portrait") else (64, 48)
  return dict(poses=np.stack(poses), instance_num=instance_num, visibility=visibility,
              world_kp=world_kp, width=width, height=height, layout=layout)


def build_example(scene, drop=(), overrides=None):
  """Serialises the scene as an Objectron sequences SequenceExample."""
  overrides = overrides or {}
  seq = tf.train.SequenceExample()
  seq.context.feature["sequence_id"].bytes_list.value.append(b"book/batch-1/0")
  seq.context.feature["count"].int64_list.value.append(len(scene["poses"]))
  lists = seq.feature_lists.feature_list
  proj = _gl_projection()
  for t, c2w in enumerate(scene["poses"]):
    view = np.linalg.inv(c2w)
    n = scene["instance_num"][t]
    kp_world = scene["world_kp"][:n]
    kp_cam = kp_world @ view[:3, :3].T + view[:3, 3]
    clip = np.concatenate([kp_cam, np.ones(kp_cam.shape[:-1] + (1,))], -1) @ proj.T
    ndc = clip[..., :3] / clip[..., 3:]
    uv = _ndc_to_frame(ndc, scene["layout"])
    p2d = np.concatenate([uv, -kp_cam[..., 2:]], -1)
    rotations = [view[:3, :3] @ _rot_y(o[3]) for o in OBJECTS[:n]]
    feats = {
        "image/encoded": ("bytes", [_jpeg(scene["width"], scene["height"], t)]),
        "image/width": ("int64", [scene["width"]]),
        "image/height": ("int64", [scene["height"]]),
        "instance_num": ("int64", [n]),
        "point_num": ("int64", [9] * n),
        "point_2d": ("float", p2d.ravel()),
        "point_3d": ("float", kp_cam.ravel()),
        "object/name": ("bytes", [o[0].encode() for o in OBJECTS[:n]]),
        "object/visibility": ("float", scene["visibility"][t]),
        "object/translation": ("float", kp_cam[:, 0].ravel()),
        "object/orientation": ("float", np.concatenate([r.ravel() for r in rotations]
                                                       if n else [])),
        "object/scale": ("float", np.concatenate([o[2] for o in OBJECTS[:n]]) if n else []),
        "camera/intrinsics": ("float", [FX, 0, CX, 0, FY, CY, 0, 0, 1]),
        "camera/extrinsics": ("float", c2w.ravel()),
        "camera/view": ("float", view.ravel()),
        "camera/projection": ("float", proj.ravel()),
    }
    feats.update(overrides.get(t, {}))
    for key, (kind, values) in feats.items():
      if key in drop:
        continue
      getattr(lists[key].feature.add(), f"{kind}_list").value.extend(
          [float(v) for v in values] if kind == "float" else list(values))
  return seq.SerializeToString()


@pytest.fixture(scope="module")
def scene():
  return make_scene()


@pytest.fixture(scope="module")
def record(scene):
  return objectron.parse_sequence_example(build_example(scene))


def test_corner_order_matches_known_box_axes(record):
  corners = record["box_corners_world"][0]  # [K, 8, 3]
  for k, (_, center, size, yaw) in enumerate(OBJECTS):
    rot = _rot_y(yaw)
    c = corners[k]
    # Canonical bits: x = 4, y = 2, z = 1 in the object's own axes.
    np.testing.assert_allclose(c[4] - c[0], size[0] * rot[:, 0], atol=1e-5)
    np.testing.assert_allclose(c[2] - c[0], size[1] * rot[:, 1], atol=1e-5)
    np.testing.assert_allclose(c[1] - c[0], size[2] * rot[:, 2], atol=1e-5)
    np.testing.assert_allclose(c, geometry.box_corners(center, size, rot), atol=1e-5)
  # Static objects: every frame stores the same world box (frame 1 borrows object 1's box).
  for t in range(3):
    np.testing.assert_allclose(record["box_corners_world"][t], corners, atol=1e-5)


def test_projection_lands_on_stored_point_2d(scene, record):
  uvd = geometry.project_box(record["box_corners_world"], record["world_to_camera"][:, None],
                             record["intrinsics"][:, None])
  proj = _gl_projection()
  for t in range(2):  # frames 0 and 1 look at the objects
    for k in range(scene["instance_num"][t]):
      view = np.linalg.inv(scene["poses"][t])
      kp_cam = scene["world_kp"][k, 1:] @ view[:3, :3].T + view[:3, 3]
      clip = np.concatenate([kp_cam, np.ones((8, 1))], -1) @ proj.T
      want_uv = _ndc_to_frame(clip[:, :3] / clip[:, 3:], "portrait_cw")
      np.testing.assert_allclose(uvd[t, k, :, :2], want_uv, atol=1e-4)
      np.testing.assert_allclose(uvd[t, k, :, 2], -kp_cam[:, 2], rtol=1e-5)
      box = record["boxes_2d"][t, k]
      np.testing.assert_allclose(
          box, np.clip([want_uv[:, 1].min(), want_uv[:, 0].min(), want_uv[:, 1].max(),
                        want_uv[:, 0].max()], 0, 1), atol=1e-4)
      assert box[2] > box[0] and box[3] > box[1]
  # Normalised intrinsics of the portrait frame: fx from the capture's fy over its height, etc.
  np.testing.assert_allclose(record["intrinsics"][0],
                             [[FY / CAPTURE_H, 0, (CAPTURE_H - CY) / CAPTURE_H],
                              [0, FX / CAPTURE_W, CX / CAPTURE_W], [0, 0, 1]], rtol=1e-6)


def test_visibility_boxes_and_metadata(scene, record):
  # Frame 1 does not annotate object 1; frame 2 looks away from both.
  np.testing.assert_array_equal(record["visible"], [[True, True], [True, False], [False, False]])
  np.testing.assert_array_equal(record["boxes_2d"][~record["visible"]], 0.0)
  assert record["video_id"] == b"book/batch-1/0"
  np.testing.assert_array_equal(record["category"], [objectron.CATEGORIES.index("book"),
                                                     objectron.CATEGORIES.index("cup")])
  np.testing.assert_array_equal(record["instance_ids"], [0, 1])
  assert [len(f) for f in record["frames"]] == [len(_jpeg(48, 64, t)) for t in range(3)]
  assert Image.open(io.BytesIO(record["frames"][0])).size == (48, 64)
  video_record.validate(record)


def test_low_annotation_visibility_hides_object(scene):
  ex = build_example(scene, overrides={0: {"object/visibility": ("float", [0.9, 0.05])}})
  rec = objectron.parse_sequence_example(ex)
  np.testing.assert_array_equal(rec["visible"][0], [True, False])
  np.testing.assert_array_equal(rec["boxes_2d"][0, 1], 0.0)


@pytest.mark.parametrize("layout", ["landscape", "portrait_ccw"])
def test_auto_orientation_resolves_other_layouts(layout):
  sc = make_scene(layout)
  rec = objectron.parse_sequence_example(build_example(sc))
  uvd = geometry.project_box(rec["box_corners_world"][:1], rec["world_to_camera"][:1, None],
                             rec["intrinsics"][:1, None])
  view = np.linalg.inv(sc["poses"][0])
  kp_cam = sc["world_kp"][0, 1:] @ view[:3, :3].T + view[:3, 3]
  clip = np.concatenate([kp_cam, np.ones((8, 1))], -1) @ _gl_projection().T
  np.testing.assert_allclose(uvd[0, 0, :, :2], _ndc_to_frame(clip[:, :3] / clip[:, 3:], layout),
                             atol=1e-4)


def test_object_features_fallback_matches_point_3d(scene, record):
  rec = objectron.parse_sequence_example(build_example(scene, drop=("point_3d",)))
  np.testing.assert_allclose(rec["box_corners_world"], record["box_corners_world"], atol=1e-5)
  np.testing.assert_array_equal(rec["visible"], record["visible"])


def test_wrong_forced_orientation_is_an_error(scene):
  config = objectron.ObjectronConfig(orientation="landscape")
  with pytest.raises(objectron.ObjectronFormatError, match="reprojects"):
    objectron.parse_sequence_example(build_example(scene), config)


def test_malformed_records_name_record_and_field(scene):
  with pytest.raises(objectron.ObjectronFormatError, match=r"book/batch-1/0.*point_2d"):
    objectron.parse_sequence_example(build_example(scene, drop=("point_2d",)))
  bad = {1: {"point_3d": ("float", np.zeros(9 * 3 - 1))}}
  with pytest.raises(objectron.ObjectronFormatError, match=r"frame 1: point_3d has 26 values"):
    objectron.parse_sequence_example(build_example(scene, overrides=bad))
  bad = {0: {"camera/intrinsics": ("float", [FX, 0, CX, 0, FY, CY])}}
  with pytest.raises(objectron.ObjectronFormatError, match="camera/intrinsics"):
    objectron.parse_sequence_example(build_example(scene, overrides=bad))


def test_cli_writes_array_record(scene, record, tmp_path):
  shard = str(tmp_path / "book_train-00000-of-00001")
  with tf.io.TFRecordWriter(shard) as writer:
    writer.write(build_example(scene))
    writer.write(build_example(make_scene()))
  out_dir = str(tmp_path / "out")
  objectron.main(["--input", shard, "--out_dir", out_dir])
  videos = video_record.read_array_record(
      os.path.join(out_dir, os.path.basename(shard) + ".array_record"))
  assert len(videos) == 2
  got = videos[0]
  for key in ("box_corners_world", "boxes_2d", "visible", "intrinsics", "world_to_camera"):
    np.testing.assert_array_equal(got[key], record[key])
  assert got["frames"] == record["frames"]


def test_principal_point_convention_is_chosen_per_file_and_recorded(record):
  assert record["attributes"]["objectron_principal_point"] == "H-cy"
  assert record["attributes"]["objectron_orientation"] == "portrait_cw"
  sc = make_scene("portrait_cw_cy")
  rec = objectron.parse_sequence_example(build_example(sc))
  assert rec["attributes"]["objectron_principal_point"] == "cy"
  assert rec["attributes"]["objectron_orientation"] == "portrait_cw"
  np.testing.assert_allclose(rec["intrinsics"][0, 0, 2], CY / CAPTURE_H, rtol=1e-6)
  uvd = geometry.project_box(rec["box_corners_world"][:1], rec["world_to_camera"][:1, None],
                             rec["intrinsics"][:1, None])
  view = np.linalg.inv(sc["poses"][0])
  kp_cam = sc["world_kp"][0, 1:] @ view[:3, :3].T + view[:3, 3]
  clip = np.concatenate([kp_cam, np.ones((8, 1))], -1) @ _gl_projection().T
  np.testing.assert_allclose(uvd[0, 0, :, :2],
                             _ndc_to_frame(clip[:, :3] / clip[:, 3:], "portrait_cw_cy"), atol=1e-4)
  # Forcing the other convention fails by name, listing both conventions' errors.
  config = objectron.ObjectronConfig(orientation="portrait_cw", principal_point="H-cy")
  with pytest.raises(objectron.ObjectronFormatError,
                     match=r"book/batch-1/0.*portrait_cw/H-cy"):
    objectron.parse_sequence_example(build_example(sc), config, record_name="shard#0")


def test_neither_convention_fitting_fails_by_name(scene):
  bad = {0: {"point_2d": ("float", np.full(2 * 9 * 3, 0.5))}}
  with pytest.raises(objectron.ObjectronFormatError,
                     match=r"shard-7#3 \(book/batch-1/0\).*H-cy.*cy"):
    objectron.parse_sequence_example(build_example(scene, overrides=bad),
                                     record_name="shard-7#3")


def test_a_file_that_is_not_objectron_names_the_file(tmp_path):
  with pytest.raises(objectron.ObjectronFormatError, match=r"blob#0 is not an Objectron record"):
    objectron.parse_sequence_example(b"\xff\xff\xff not a proto", record_name="blob#0")
  junk = tmp_path / "junk.tfrecord"
  junk.write_bytes(b"this is not a tfrecord file at all" * 10)
  with pytest.raises(objectron.ObjectronFormatError, match=r"junk.tfrecord: not a readable"):
    list(objectron.read_tfrecord(str(junk)))
  # A tfrecord of something else (a tf.train.Example of other features) names file and record.
  other = tmp_path / "other.tfrecord"
  with tf.io.TFRecordWriter(str(other)) as writer:
    example = tf.train.Example()
    example.features.feature["label"].int64_list.value.append(3)
    writer.write(example.SerializeToString())
  with pytest.raises(objectron.ObjectronFormatError, match=r"other.tfrecord#0"):
    list(objectron.read_tfrecord(str(other)))
