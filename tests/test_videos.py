"""Your own videos (data_pipelines/videos.py): the folder format's parser on a hand-computed
scene, every refusal (naming the file and the field), synthetic -> folders -> records equal to the
generator's own records, the CLI, and the same conversion on Apache Beam (bad videos counted)."""
import copy
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from data_pipelines import dataset_conversion
from data_pipelines import synthetic
from data_pipelines import video_record
from data_pipelines import videos
from neural_assets import geometry
from tests import video_fixtures

HEIGHT, WIDTH = 24, 32
# Pixel intrinsics of the hand-made video: normalised fx = 20 / 32, fy = 20 / 24, principal point
# (15.5 + 0.5) / 32 = (11.5 + 0.5) / 24 = 0.5 (OpenCV pixel centres).
FOCAL, CX, CY = 20.0, 15.5, 11.5
K_PIXELS = [[FOCAL, 0, CX], [0, FOCAL, CY], [0, 0, 1]]
# Round trip through JSON: float32 record arrays -> float64 text -> float64 conversions ->
# float32; coordinates up to ~10 world units, so a few float32 ulps (~1e-6) of difference.
ROUND_TRIP_ATOL = 1e-5
SCENE = synthetic.SceneConfig(height=32, width=32, num_frames=3)
NUM_SYNTHETIC = 3  # one video per synthetic.EXPORT_STYLES entry.
SEED = 5


def _annotations():
  """Two frames of an OpenGL camera at the origin looking along world -z (identity
  camera-to-world): object 4 a unit cube 5 units in front (2D box derived), object 1 with a
  given pixel box in frame 0 only, behind the camera in frame 1 (absent there)."""
  return {
      "format_version": 1,
      "image_size": [HEIGHT, WIDTH],
      "intrinsics_units": "pixels",
      "intrinsics": K_PIXELS,  # one for both frames
      "pose_type": "camera_to_world",
      "camera_convention": "opengl",
      "camera_poses": [np.eye(4).tolist(), np.eye(4).tolist()],
      "boxes": [
          [{"id": 4, "center": [0, 0, -5], "size": [1, 1, 1], "quaternion": [1, 0, 0, 0],
            "category": 2},
           {"id": 1, "center": [1, 0, -4], "size": [1, 2, 1], "rotation": np.eye(3).tolist(),
            "box_2d": [20, -3, 28, 10]}],
          [{"id": 4, "center": [0, 0, -5], "size": [1, 1, 1], "quaternion": [0, 0, 1, 0]}],
      ],
  }


def _write(video_dir, annotations, sizes=((HEIGHT, WIDTH), (HEIGHT, WIDTH))):
  os.makedirs(os.path.join(video_dir, "frames"), exist_ok=True)
  for t, (h, w) in enumerate(sizes):
    pixels = np.full((h, w, 3), 40 * t, np.uint8)
    with open(os.path.join(video_dir, "frames", f"{t:06d}.png"), "wb") as f:
      f.write(video_fixtures.encode_image(pixels))
  with open(os.path.join(video_dir, videos.ANNOTATIONS), "w") as f:
    json.dump(annotations, f)
  return video_dir


def test_parser_on_a_hand_computed_scene(tmp_path):
  record = videos.read_video(_write(str(tmp_path / "clip"), _annotations()))
  assert record["video_id"] == b"clip" and len(record["frames"]) == 2
  assert record["frames"][1] == open(tmp_path / "clip" / "frames" / "000001.png", "rb").read()
  np.testing.assert_array_equal(record["instance_ids"], [1, 4])  # sorted ids
  np.testing.assert_array_equal(record["category"], [-1, 2])
  # OpenGL identity pose -> OpenCV world_to_camera flips y and z.
  np.testing.assert_allclose(record["world_to_camera"], [np.diag([1, -1, -1, 1])] * 2)
  np.testing.assert_allclose(record["intrinsics"][0],
                             [[FOCAL / WIDTH, 0, 0.5], [0, FOCAL / HEIGHT, 0.5], [0, 0, 1]],
                             rtol=1e-6)
  # Canonical corner order: corner 4 has the x bit, corner 1 the z bit (world z of object 4).
  cube = record["box_corners_world"][0, 1]
  np.testing.assert_allclose(cube[0], [-0.5, -0.5, -5.5])
  np.testing.assert_allclose(cube[4] - cube[0], [1, 0, 0], atol=1e-6)
  np.testing.assert_allclose(cube[1] - cube[0], [0, 0, 1], atol=1e-6)
  # Derived 2D box: the near face (depth 4.5) spans +-0.5 -> u, v = 0.5 +- f * 0.5 / 4.5.
  du, dv = FOCAL / WIDTH * 0.5 / 4.5, FOCAL / HEIGHT * 0.5 / 4.5
  np.testing.assert_allclose(record["boxes_2d"][0, 1], [0.5 - dv, 0.5 - du, 0.5 + dv, 0.5 + du],
                             rtol=1e-5)
  # Frame 1: object 4 turned 180 degrees about y (quaternion [0, 0, 1, 0]): same box, corner 0
  # now at the opposite x and z.
  np.testing.assert_allclose(record["box_corners_world"][1, 1, 0], [0.5, -0.5, -4.5], atol=1e-6)
  # Given box clipped to the image and normalised; absent in frame 1: frame 0's corners, unseen.
  np.testing.assert_allclose(record["boxes_2d"][0, 0], [0, 20 / WIDTH, 10 / HEIGHT, 28 / WIDTH])
  np.testing.assert_array_equal(record["visible"], [[True, True], [False, True]])
  corners = record["box_corners_world"]
  np.testing.assert_array_equal(corners[1, 0], corners[0, 0])
  np.testing.assert_array_equal(record["boxes_2d"][1, 0], 0)
  assert record["attributes"] == {
      "videos_camera_convention": "opengl", "videos_pose_type": "camera_to_world",
      "videos_intrinsics_units": "pixels", "videos_boxes_2d": "mixed"}


def test_derived_visibility_rule(tmp_path):
  """Without box_2d: visible = the given flag and all corners in front and overlapping the image;
  an object behind the camera in one frame only is kept (not visible there)."""
  annotations = _annotations()
  annotations["boxes"][0] = annotations["boxes"][0][:1] + [
      {"id": 7, "center": [0, 0, 3], "size": [1, 1, 1], "quaternion": [1, 0, 0, 0]},  # behind
      {"id": 8, "center": [9, 0, -5], "size": [1, 1, 1], "quaternion": [1, 0, 0, 0]}]  # off
  annotations["boxes"][1] = [
      {"id": 4, "center": [0, 0, -5], "size": [1, 1, 1], "quaternion": [1, 0, 0, 0],
       "visible": False},  # e.g. occluded
      {"id": 7, "center": [0, 0, -3], "size": [1, 1, 1], "quaternion": [1, 0, 0, 0]},
      {"id": 8, "center": [0.5, 0, -5], "size": [1, 1, 1], "quaternion": [1, 0, 0, 0]}]
  record = videos.read_video(_write(str(tmp_path / "v"), annotations))
  np.testing.assert_array_equal(record["instance_ids"], [4, 7, 8])
  np.testing.assert_array_equal(record["visible"], [[True, False, False], [False, True, True]])
  assert record["attributes"]["videos_boxes_2d"] == "derived"
  # The derived boxes are the clipped projections.
  uvd = geometry.project_box(record["box_corners_world"][1], record["world_to_camera"][1],
                             record["intrinsics"][1])
  np.testing.assert_allclose(record["boxes_2d"][1, 1:], geometry.box2d_from_corners(uvd)[1:],
                             rtol=1e-6)


def _set(path, value):
  def change(annotations):
    *parents, last = path
    node = annotations
    for key in parents:
      node = node[key]
    if value is _DELETE:
      del node[last]
    else:
      node[last] = value
  return change


_DELETE = object()


def _rename(old, new):
  def change(annotations):
    annotations[new] = annotations.pop(old)
  return change


def _box_key(old, new):
  def change(annotations):
    box = annotations["boxes"][0][0]
    box[new] = box.pop(old)
  return change


def _both_frames_behind(annotations):
  for frame in annotations["boxes"]:
    for box in frame:
      if box["id"] == 4:
        box["center"] = [0, 0, 5]  # +z: behind an OpenGL camera looking along -z


def _frame_files(annotations):
  annotations["frame_files"] = ["frames/000000.png", "frames/000001.png", "frames/000002.png"]


# (case, change of the valid annotations, frame sizes or None, field named, words in the message)
REFUSALS = [
    ("missing_frame_file", _frame_files, None, "frame_files[2]", "000002.png does not exist"),
    ("intrinsics_for_fewer_frames", _set(["intrinsics"], [K_PIXELS]), None, "intrinsics",
     "1 entries, want one per frame: 2 frames"),
    ("camera_poses_length", _set(["camera_poses"], [np.eye(4).tolist()] * 3), None,
     "camera_poses", "3 entries"),
    ("boxes_length", _set(["boxes"], [[]]), None, "boxes", "1 entries"),
    ("intrinsics_shape", _set(["intrinsics"], [[1, 0], [0, 1]]), None, "intrinsics",
     "has shape [2, 2], want [3, 3]"),
    ("quaternion_zero", _set(["boxes", 0, 0, "quaternion"], [0, 0, 0, 0]), None,
     "boxes[0][0].quaternion", "norm 0"),
    ("quaternion_non_finite", _set(["boxes", 0, 0, "quaternion"], [float("nan"), 0, 0, 1]), None,
     "boxes[0][0].quaternion", "non-finite"),
    ("quaternion_not_unit", _set(["boxes", 0, 0, "quaternion"], [1, 0, 0, 0.1]), None,
     "boxes[0][0].quaternion", f"not 1 within {videos.QUATERNION_TOLERANCE}"),
    ("quaternion_and_matrix", _set(["boxes", 0, 0, "rotation"], np.eye(3).tolist()), None,
     "boxes[0][0].quaternion", "exactly one"),
    ("rotation_not_rotation", _set(["boxes", 0, 1, "rotation"], np.diag([1, 1, -1]).tolist()),
     None, "boxes[0][1].rotation", "not a rotation"),
    ("size_not_positive", _set(["boxes", 0, 0, "size"], [1, 0, 1]), None, "boxes[0][0].size",
     "> 0"),
    ("box_behind_every_camera", _both_frames_behind, None, "boxes[*] with id 4",
     "behind the camera"),
    ("mixed_image_sizes", lambda a: None, ((HEIGHT, WIDTH), (16, 16)), "image_size",
     "000001.png) is 16x16"),
    ("unknown_camera_convention", _set(["camera_convention"], "colmap"), None,
     "camera_convention", "unknown value 'colmap'"),
    ("unknown_pose_type", _set(["pose_type"], "cam2world"), None, "pose_type",
     "unknown value 'cam2world'"),
    ("unknown_units", _set(["intrinsics_units"], "mm"), None, "intrinsics_units",
     "unknown value 'mm'"),
    ("typo_top_level_key", _rename("camera_poses", "camera_pose"), None, "camera_pose",
     "did you mean 'camera_poses'"),
    ("typo_box_key", _box_key("center", "centre"), None, "boxes[0][0].centre",
     "did you mean 'center'"),
    ("missing_key", _set(["pose_type"], _DELETE), None, "pose_type", "required key"),
    ("pose_not_rigid", _set(["camera_poses", 1], np.diag([2, 2, 2, 1]).tolist()), None,
     "camera_poses[1]", "not a rotation"),
    ("duplicate_id", lambda a: a["boxes"][1].append(copy.deepcopy(a["boxes"][1][0])), None,
     "boxes[1][1].id", "appears twice"),
    ("conflicting_category", _set(["boxes", 1, 0, "category"], 3), None,
     "boxes[1][0].category", "category 3 here and 2 at boxes[0][0]"),
    ("bad_box_2d", _set(["boxes", 0, 1, "box_2d"], [28, 0, 20, 10]), None, "boxes[0][1].box_2d",
     "x0 < x1"),
    ("format_version", _set(["format_version"], 2), None, "format_version", "knows 1"),
]


@pytest.mark.parametrize("case,change,sizes,field,words", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusals_name_file_and_field(tmp_path, case, change, sizes, field, words):
  annotations = copy.deepcopy(_annotations())
  change(annotations)
  video_dir = _write(str(tmp_path / case), annotations,
                     *(() if sizes is None else (sizes,)))
  with pytest.raises(videos.VideoFormatError) as error:
    videos.read_video(video_dir)
  message = str(error.value)
  assert error.value.field == field, message
  assert message.startswith(os.path.join(video_dir, videos.ANNOTATIONS) + f": {field}: "), message
  assert words in message, message


def test_refusals_of_files(tmp_path):
  empty = str(tmp_path / "no_annotations")
  os.makedirs(empty)
  with pytest.raises(videos.VideoFormatError, match=r"no_annotations/annotations\.json: \(file\)"):
    videos.read_video(empty)
  broken = _write(str(tmp_path / "broken_json"), {})
  with open(os.path.join(broken, videos.ANNOTATIONS), "w") as f:
    f.write('{"format_version": 1,')
  with pytest.raises(videos.VideoFormatError, match=r"broken_json/annotations\.json: \(JSON\)"):
    videos.read_video(broken)
  not_image = _write(str(tmp_path / "not_image"), _annotations())
  with open(os.path.join(not_image, "frames", "000001.png"), "wb") as f:
    f.write(b"not a png")
  with pytest.raises(videos.VideoFormatError, match=r"frame 1 \(.*000001\.png\).*not a readable"):
    videos.read_video(not_image)
  no_frames = _write(str(tmp_path / "no_frames"), _annotations(), sizes=())
  with pytest.raises(videos.VideoFormatError, match=r"frame_files: no frames"):
    videos.read_video(no_frames)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  """The synthetic videos in the folder format, and the generator's own records of them."""
  root = tmp_path_factory.mktemp("videos")
  synthetic.main(["--export_videos", str(root / "folders"), "--num_videos", str(NUM_SYNTHETIC),
                  "--resolution", "32", "--num_frames", "3", "--seed", str(SEED)])
  plan = synthetic.conversion_plan(str(root / "direct"), NUM_SYNTHETIC, SCENE, seed=SEED)
  dataset_conversion.run_local(plan)
  (direct,) = glob.glob(str(root / "direct" / "train.array_record-*"))
  return dict(root=root, folders=str(root / "folders"),
              direct=video_record.read_array_record(direct))


def _assert_same_records(got, want):
  assert [g["video_id"] for g in got] == [w["video_id"] for w in want]
  for g, w in zip(got, want):
    assert g["frames"] == w["frames"], g["video_id"]  # the PNG bytes, unchanged
    for name, (dtype, _) in video_record.ARRAY_FIELDS.items():
      if np.dtype(dtype).kind == "f":
        np.testing.assert_allclose(g[name], w[name], rtol=0, atol=ROUND_TRIP_ATOL,
                                   err_msg=f"{g['video_id']} {name}")
      else:
        np.testing.assert_array_equal(g[name], w[name], err_msg=f"{g['video_id']} {name}")


def test_synthetic_round_trip_equals_the_generator_records(exported, tmp_path):
  written = videos.main(["--input", exported["folders"], "--out_dir", str(tmp_path),
                         "--videos_per_shard", "2"])
  assert [os.path.basename(p) for p in written] == ["train.array_record-00000-of-00002",
                                                    "train.array_record-00001-of-00002"]
  got = [r for p in written for r in video_record.read_array_record(p)]
  _assert_same_records(got, exported["direct"])
  conventions = [r["attributes"]["videos_camera_convention"] for r in got]
  assert conventions == [s["camera_convention"] for s in synthetic.EXPORT_STYLES]
  # The OpenGL / pixel export really is in another convention than the record.
  opengl = json.load(open(os.path.join(exported["folders"], got[1]["video_id"].decode(),
                                       videos.ANNOTATIONS)))
  assert opengl["pose_type"] == "camera_to_world" and opengl["intrinsics_units"] == "pixels"
  assert not np.allclose(opengl["camera_poses"], exported["direct"][1]["world_to_camera"],
                         atol=0.1)
  assert not np.allclose(opengl["intrinsics"], exported["direct"][1]["intrinsics"], atol=0.1)


def test_derived_2d_boxes_follow_the_projection(exported, tmp_path):
  """Exported without 2D boxes: visible / boxes_2d are the projection rule's, 3D fields as the
  generator's."""
  record = exported["direct"][0]
  videos.write_video_dir(record, str(tmp_path / "v"), "camera_to_world", "blender", "pixels",
                         write_boxes_2d=False)
  got = videos.read_video(str(tmp_path / "v"))
  np.testing.assert_allclose(got["box_corners_world"], record["box_corners_world"],
                             atol=ROUND_TRIP_ATOL)
  uvd = geometry.project_box(record["box_corners_world"], record["world_to_camera"][:, None],
                             record["intrinsics"][:, None])
  valid, _ = geometry.box_validity(uvd, min_depth=videos.MIN_DEPTH)
  np.testing.assert_array_equal(got["visible"], valid)
  assert got["visible"].any()
  np.testing.assert_allclose(got["boxes_2d"][valid], geometry.box2d_from_corners(uvd)[valid],
                             atol=ROUND_TRIP_ATOL)


def test_cli_module_entry_point_and_first_failure(exported, tmp_path):
  out = tmp_path / "out"
  result = subprocess.run([sys.executable, "-m", "data_pipelines.videos", "--input",
                           exported["folders"], "--out_dir", str(out), "--split", "eval"],
                          capture_output=True, text=True, check=False,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  assert result.returncode == 0, result.stderr
  assert "eval.array_record-00000-of-00001: 3 videos" in result.stdout
  # A refused video stops the single-process conversion, naming the video, file and field.
  bad_root = tmp_path / "bad"
  annotations = _annotations()
  annotations["camera_convention"] = "arkit"
  _write(str(bad_root / "clip"), annotations)
  with pytest.raises(RuntimeError, match=r"clip/annotations\.json: camera_convention: unknown"):
    videos.main(["--input", str(bad_root), "--out_dir", str(tmp_path / "bad_out")])
  with pytest.raises(FileNotFoundError, match="holds no video directories"):
    videos.list_videos(str(tmp_path / "out"))


def test_beam_counts_and_skips_bad_videos(exported, tmp_path):
  pytest.importorskip("apache_beam")
  from data_pipelines import beam_convert  # pylint: disable=g-import-not-at-top
  inputs = tmp_path / "inputs"
  os.makedirs(inputs)
  for name in os.listdir(exported["folders"]):
    os.symlink(os.path.join(exported["folders"], name), inputs / name)
  annotations = _annotations()
  annotations["intrinsics"] = [K_PIXELS]
  _write(str(inputs / "zz_bad"), annotations)
  out = tmp_path / "beam"
  counters = beam_convert.main(["videos", "--input", str(inputs), "--out_dir", str(out),
                                "--videos_per_shard", "8"])
  assert counters["converted_videos"] == NUM_SYNTHETIC and counters["failed_videos"] == 1
  assert counters.get("failed_inputs", 0) == 0
  failures = "".join(open(p).read() for p in glob.glob(str(out / "conversion_failures*")))
  assert "zz_bad" in failures and "annotations.json: intrinsics: has 1 entries" in failures
  (shard,) = glob.glob(str(out / "train.array_record-*"))
  _assert_same_records(video_record.read_array_record(shard), exported["direct"])
