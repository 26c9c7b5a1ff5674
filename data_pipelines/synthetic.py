"""Procedural multi-object videos in the MOVi-E schema, rendered by a vectorised numpy ray caster.

Each video: a textured ground plane (z = 0, world z up as in Kubric), K objects of different
shapes (box, sphere, cylinder; non-uniform sizes make cuboids, ellipsoids and discs), colours and
textures (solid, checker, stripes, or a marked front); resting objects slide and spin about +z,
"dynamic" objects float and tumble about random axes; the camera moves on a straight line while
looking at a point near the origin (as in MOVi-E). The 3D-motion knobs (off by default; the toy
3D world of configs/synthetic_3d.py turns them on) elongate objects along their marked axis,
vary sizes across objects, set a minimum spin, slide objects towards / away from the camera and
dolly the camera between two distances, so that orientation, size and depth change visibly
within a video. Every pixel ray is intersected analytically with every primitive
(in the primitive's unit space), shaded with a directional light plus ambient, and the renderer
also returns the distance to the camera centre (Kubric's `depth`), the instance ids, world normals
and object coordinates.

The output of `generate_example` has the *decoded* layout and feature names of a MOVi-E TFDS
example (`video`, `segmentations`, `depth`, `normal`, `object_coordinates`, `metadata/...`,
`camera/...` in the Blender camera convention, `instances/...` with Kubric's `bboxes_3d` corner
order, see data_pipelines/movi_e.py), so `movi_e.example_to_video_record` converts it exactly as it
converts the real data, and `movi_e.write_tfds` can store it as a real TFDS dataset. Differences
from the real data: optical flow is not rendered (zeros, range [0, 0]); `instances/category` is the
shape index into `SHAPES` (not a GSO category); mass / friction / restitution are placeholders.

CLI (no TensorFlow needed unless --tfds_dir is given):
  python -m data_pipelines.synthetic --out_dir DIR --num_videos N --resolution 128 \
      --num_frames 8 --seed 0 [--tfds_dir TFDS_DIR] [--num_workers 2]
  python -m data_pipelines.synthetic --export_videos DIR ...   # the folder format of
      # data_pipelines.videos (frames + annotations.json per video), e.g. to try that converter
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import multiprocessing
import os
import time
from typing import Any

import numpy as np

from neural_assets import range_checks
from neural_assets import geometry

SHAPES = ("box", "sphere", "cylinder")
# "front": a marked face. The object's front end (own +x beyond `front_fraction` of its
# half-extent) has the second colour, set to the first one's far corner of the RGB cube: the
# object's heading is visible from any view, so a yaw changes its pixels even for a round shape.
PATTERNS = ("solid", "checker", "stripes", "front")


@dataclasses.dataclass(frozen=True)
class SceneConfig:
  """Every knob of the generator (lengths in metres, angles in radians, times in frames)."""
  height: int = 128
  width: int = 128
  num_frames: int = 8
  min_objects: int = 3
  max_objects: int = 6
  min_size: float = 0.6  # extent of an object along each of its axes.
  max_size: float = 1.8
  spawn_radius: float = 2.5  # objects start within this distance of the origin (xy).
  dynamic_prob: float = 0.3  # chance that an object floats and tumbles.
  dynamic_height: tuple[float, float] = (1.0, 2.5)
  max_speed: float = 0.15  # per frame.
  max_spin: float = 0.25  # per frame.
  # Camera: MOVi-E-like shell around the origin, moving on a straight line.
  camera_distance: tuple[float, float] = (7.0, 10.0)
  camera_elevation: tuple[float, float] = (0.35, 0.9)
  camera_speed: float = 0.25  # per frame.
  camera_target_jitter: float = 0.5
  focal_length: float = 35.0  # Kubric's MOVi defaults.
  sensor_width: float = 32.0
  # Shading.
  ambient: float = 0.35
  light_direction: tuple[float, float, float] = (0.4, -0.3, 1.0)  # towards the light.
  checker_period: float = 1.0  # ground checker size.
  texture_frequency: float = 2.0  # object checker / stripes per unit half-extent.
  far: float = 100.0  # depth of rays that hit nothing (sky).
  min_separation: float = 0.2  # gap between spawned object footprints.
  # Variety knobs (the defaults keep the MOVi-E-like mix; the demo's toy config simplifies):
  patterns: tuple[str, ...] = ("solid", "checker", "stripes")  # object textures drawn from these.
  ground_pattern: str = "checker"  # "checker" (two colours) or "solid" (one colour).
  still_prob: float = 0.4  # chance that a resting object does not slide.
  min_color: float = 0.1  # object colour channels are uniform in [min_color, 1].
  # 3D-motion knobs (configs/synthetic_3d.py; the defaults are off and draw nothing, so the
  # default stream of scenes is unchanged):
  front_fraction: float = 0.4  # "front" pattern: marked where own x > this * half-extent.
  aspect_range: tuple[float, float] = (1.0, 1.0)  # own x extent times U(range): elongation.
  scale_range: tuple[float, float] = (1.0, 1.0)  # per-object size factor, log-uniform.
  min_spin: float = 0.0  # spin speeds are +-U(min_spin, max_spin) per frame.
  depth_speed: float = 0.0  # resting objects also slide +-U(0, this) per frame towards the camera.
  # Camera dolly: (near, far) distances to the look-at point; the camera starts at one and ends
  # at the other (approach or recede, chance 1/2), apparent sizes changing by ~far / near.
  # None: `camera_distance` for the whole video.
  dolly_distance: tuple[float, float] | None = None


# ------------------------------------------------------------------------------------------------
# Scene sampling.


def _look_at_opencv(position: np.ndarray, target: np.ndarray) -> np.ndarray:
  """OpenCV camera-to-world rotation [3, 3] looking from `position` at `target`, world z up."""
  forward = target - position
  forward = forward / np.linalg.norm(forward)
  right = np.cross(forward, [0.0, 0.0, 1.0])
  right = right / np.linalg.norm(right)
  down = np.cross(forward, right)
  return np.stack([right, down, forward], axis=-1)


def sample_scene(rng: np.random.Generator, config: SceneConfig) -> dict[str, Any]:
  """Samples the static description of a scene (objects, motion, camera path, colours)."""
  num_objects = int(rng.integers(config.min_objects, config.max_objects + 1))
  shapes = rng.integers(0, len(SHAPES), num_objects)
  sizes = rng.uniform(config.min_size, config.max_size, (num_objects, 3))
  spheres = shapes == SHAPES.index("sphere")
  # Half of the spheres are round, the other half ellipsoids.
  round_sphere = spheres & (rng.random(num_objects) < 0.5)
  sizes[round_sphere] = sizes[round_sphere, :1]
  cylinders = shapes == SHAPES.index("cylinder")
  sizes[cylinders, 1] = sizes[cylinders, 0]  # circular cross-section.
  # The 3D knobs' draws come from their own stream (`_motion_rng`): with the knobs off (their
  # defaults: factors 1, speed 0) every scene is bit-identical to the generator without them.
  extra = _motion_rng(rng, config, num_objects)
  sizes[:, 0] *= extra["aspect"]
  sizes *= extra["scale"][:, None]
  dynamic = rng.random(num_objects) < config.dynamic_prob
  radius = 0.5 * np.linalg.norm(sizes, axis=-1)  # bounding-sphere radius.
  # Non-overlapping footprints by rejection sampling (falls back to overlap after many tries).
  centers = np.zeros((num_objects, 3))
  for k in range(num_objects):
    for _ in range(100):
      xy = rng.uniform(-config.spawn_radius, config.spawn_radius, 2)
      if np.all(np.linalg.norm(centers[:k, :2] - xy, axis=-1)
                > radius[:k] + radius[k] + config.min_separation):
        break
    centers[k, :2] = xy
  centers[:, 2] = np.where(dynamic, rng.uniform(*config.dynamic_height, num_objects),
                           sizes[:, 2] / 2)
  velocities = np.zeros((num_objects, 3))
  velocities[:, :2] = rng.uniform(-config.max_speed, config.max_speed, (num_objects, 2))
  velocities[~dynamic & (rng.random(num_objects) < config.still_prob)] = 0.0  # some stay put.
  # Resting objects spin about +z; dynamic ones about a random axis.
  axes = np.tile([0.0, 0.0, 1.0], (num_objects, 1))
  random_axes = rng.normal(size=(num_objects, 3))
  axes[dynamic] = random_axes[dynamic] / np.linalg.norm(random_axes[dynamic], axis=-1,
                                                        keepdims=True)
  spins = rng.uniform(-config.max_spin, config.max_spin, num_objects)
  if config.min_spin > 0:  # |spin| from [0, max] mapped onto [min, max], sign kept.
    spins = np.sign(spins) * (config.min_spin + np.abs(spins) / config.max_spin
                              * (config.max_spin - config.min_spin))
  yaw0 = rng.uniform(0, 2 * np.pi, num_objects)
  tilt = np.where(dynamic[:, None, None],
                  geometry.quaternion_to_matrix(_random_unit_quaternions(rng, num_objects)),
                  np.eye(3))
  base_rotations = np.einsum("kij,kjl->kil", geometry.yaw_rotation(yaw0), tilt)
  colors = rng.uniform(config.min_color, 1.0, (num_objects, 2, 3))
  allowed = np.array([PATTERNS.index(p) for p in config.patterns])
  patterns = allowed[rng.integers(0, len(allowed), num_objects)]
  front = patterns == PATTERNS.index("front")
  colors[front, 1] = np.where(colors[front, 0] > 0.5, 0.0, 1.0)  # the most distant colour.
  # Camera: start on a shell, move on a straight line, always look near the origin.
  azimuth = rng.uniform(0, 2 * np.pi)
  elevation = rng.uniform(*config.camera_elevation)
  dist = rng.uniform(*config.camera_distance)
  cam_start = dist * np.array([np.cos(azimuth) * np.cos(elevation),
                               np.sin(azimuth) * np.cos(elevation), np.sin(elevation)])
  cam_dir = rng.normal(size=3)
  cam_dir[2] *= 0.3
  cam_velocity = cam_dir / np.linalg.norm(cam_dir) * rng.uniform(0, config.camera_speed)
  target = np.append(rng.uniform(-config.camera_target_jitter, config.camera_target_jitter, 2),
                     0.0)
  ground = rng.uniform(0.2, 0.8, (2, 3))
  sky = rng.uniform(0.5, 0.95, 3)
  # Depth motion: resting objects slide along the camera's horizontal viewing direction.
  toward = target[:2] - cam_start[:2]
  toward /= max(np.linalg.norm(toward), 1e-9)
  velocities[~dynamic, :2] += extra["depth_speed"][~dynamic, None] * toward
  dolly = None
  if config.dolly_distance is not None:
    near, far = config.dolly_distance
    dolly = (near, far) if extra["approach"] else (far, near)
  return dict(shapes=shapes, sizes=sizes, dynamic=dynamic, centers=centers,
              velocities=velocities, axes=axes, spins=spins, base_rotations=base_rotations,
              colors=colors, patterns=patterns, cam_start=cam_start, cam_velocity=cam_velocity,
              target=target, ground=ground, sky=sky, dolly=dolly,
              num_frames=config.num_frames)


def _motion_rng(rng: np.random.Generator, config: SceneConfig, num_objects: int
                ) -> dict[str, np.ndarray]:
  """The 3D knobs' random values, from a child stream spawned from `rng` (spawning draws nothing
  from `rng`, so its draws are the same with and without the knobs).

  Returns:
    aspect [K], scale [K] (size factors), depth_speed [K] (signed, per frame), approach: bool.
  """
  child = rng.spawn(1)[0]
  aspect = child.uniform(*config.aspect_range, num_objects)
  lo, hi = np.log(config.scale_range[0]), np.log(config.scale_range[1])
  scale = np.exp(child.uniform(lo, hi, num_objects))
  depth_speed = child.uniform(-config.depth_speed, config.depth_speed, num_objects)
  return dict(aspect=aspect, scale=scale, depth_speed=depth_speed,
              approach=bool(child.random() < 0.5))


def _random_unit_quaternions(rng: np.random.Generator, n: int) -> np.ndarray:
  q = rng.normal(size=(n, 4))
  return q / np.linalg.norm(q, axis=-1, keepdims=True)


def _axis_angle(axes: np.ndarray, angles: np.ndarray) -> np.ndarray:
  """[K, 3] unit axes, [K] angles -> [K, 3, 3] rotations (Rodrigues)."""
  half = angles / 2
  q = np.concatenate([np.cos(half)[:, None], np.sin(half)[:, None] * axes], axis=-1)
  return geometry.quaternion_to_matrix(q)


def scene_at(scene: dict[str, Any], frame: int) -> dict[str, np.ndarray]:
  """Object and camera poses at a frame.

  Returns:
    centers [K, 3], rotations [K, 3, 3] (object-to-world), cam_to_world [4, 4] (OpenCV).
  """
  centers = scene["centers"] + frame * scene["velocities"]
  rotations = np.einsum("kij,kjl->kil", _axis_angle(scene["axes"], frame * scene["spins"]),
                        scene["base_rotations"])
  cam_pos = scene["cam_start"] + frame * scene["cam_velocity"]
  if scene.get("dolly") is not None:  # The distance to the look-at point, linear in time.
    start, end = scene["dolly"]
    distance = start + (end - start) * frame / max(scene["num_frames"] - 1, 1)
    offset = cam_pos - scene["target"]
    cam_pos = scene["target"] + offset * (distance / np.linalg.norm(offset))
  cam_pos[2] = max(cam_pos[2], 1.0)  # never below the ground.
  cam_to_world = geometry.pose_matrix(_look_at_opencv(cam_pos, scene["target"]), cam_pos)
  return dict(centers=centers, rotations=rotations, cam_to_world=cam_to_world)


# ------------------------------------------------------------------------------------------------
# Ray casting.


# Small-matrix products as explicit sums: [N, 3] x [3, 3] through BLAS is slow for tall, thin
# arrays and oversubscribes threads on shared CPUs.


def _matvec(matrix: np.ndarray, vectors: np.ndarray) -> np.ndarray:
  """[3, 3] matrix times each row of [N, 3] vectors -> [N, 3]."""
  return (vectors[:, 0:1] * matrix[:, 0] + vectors[:, 1:2] * matrix[:, 1]
          + vectors[:, 2:3] * matrix[:, 2])


def _dot(vectors: np.ndarray, v: np.ndarray) -> np.ndarray:
  """Row-wise dot products of [N, 3] vectors with one [3] vector -> [N]."""
  return vectors[:, 0] * v[0] + vectors[:, 1] * v[1] + vectors[:, 2] * v[2]


def camera_rays(cam_to_world: np.ndarray, intrinsics: np.ndarray, height: int,
                width: int) -> tuple[np.ndarray, np.ndarray]:
  """Unit world-space rays through the pixel centres.

  Args:
    cam_to_world: [4, 4] OpenCV camera-to-world; intrinsics: [3, 3] normalised.

  Returns:
    origin [3], directions [H * W, 3] (row-major pixels).
  """
  v, u = np.meshgrid((np.arange(height) + 0.5) / height, (np.arange(width) + 0.5) / width,
                     indexing="ij")
  dirs = np.stack([(u - intrinsics[0, 2]) / intrinsics[0, 0],
                   (v - intrinsics[1, 2]) / intrinsics[1, 1], np.ones_like(u)], axis=-1)
  dirs = _matvec(cam_to_world[:3, :3], dirs.reshape(-1, 3))
  dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
  return cam_to_world[:3, 3], dirs


def _intersect_unit(shape: str, o: np.ndarray, d: np.ndarray, eps: float = 1e-6):
  """Ray / unit-primitive intersection in the primitive's unit space.

  Args:
    shape: "box" ([-1, 1]^3), "sphere" (radius 1) or "cylinder" (radius 1 about z, z in [-1, 1]).
    o: [3] ray origin; d: [N, 3] ray directions (not unit: t is the world distance).

  Returns:
    t [N] (inf on a miss), unit-space normal [N, 3].
  """
  n = d.shape[0]
  normal = np.zeros((n, 3))
  with np.errstate(divide="ignore", invalid="ignore"):
    if shape == "box":
      t1, t2 = (-1.0 - o) / d, (1.0 - o) / d
      t_min, t_max = np.minimum(t1, t2), np.maximum(t1, t2)
      t_min = np.where(np.isnan(t_min), -np.inf, t_min)
      t_max = np.where(np.isnan(t_max), np.inf, t_max)
      near, far = t_min.max(axis=-1), t_max.min(axis=-1)
      hit = (near <= far) & (near > eps)
      axis = t_min.argmax(axis=-1)
      normal[np.arange(n), axis] = -np.sign(d[np.arange(n), axis])
      t = np.where(hit, near, np.inf)
    elif shape == "sphere":
      a = np.einsum("ni,ni->n", d, d)
      b = 2 * _dot(d, o)
      c = o @ o - 1.0
      disc = b * b - 4 * a * c
      t = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
      t = np.where((disc >= 0) & (t > eps), t, np.inf)
      normal = o + np.where(np.isfinite(t), t, 0)[:, None] * d
    elif shape == "cylinder":
      a = d[:, 0] ** 2 + d[:, 1] ** 2
      b = 2 * (o[0] * d[:, 0] + o[1] * d[:, 1])
      c = o[0] ** 2 + o[1] ** 2 - 1.0
      disc = b * b - 4 * a * c
      t_side = (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a)
      z_side = o[2] + t_side * d[:, 2]
      t_side = np.where((disc >= 0) & (a > 0) & (np.abs(z_side) <= 1) & (t_side > eps),
                        t_side, np.inf)
      cap_z = np.where(d[:, 2] < 0, 1.0, -1.0)  # the cap facing the ray.
      t_cap = (cap_z - o[2]) / d[:, 2]
      xy = o[:2] + t_cap[:, None] * d[:, :2]
      t_cap = np.where((np.sum(xy * xy, axis=-1) <= 1) & (t_cap > eps), t_cap, np.inf)
      t = np.minimum(t_side, t_cap)
      p = o + np.where(np.isfinite(t_side), t_side, 0)[:, None] * d
      side_normal = np.stack([p[:, 0], p[:, 1], np.zeros(n)], axis=-1)
      cap_normal = np.stack([np.zeros(n), np.zeros(n), cap_z], axis=-1)
      normal = np.where((t_cap < t_side)[:, None], cap_normal, side_normal)
    else:
      raise ValueError(f"Unknown shape {shape!r}; expected one of {SHAPES}.")
  return t, normal


def _pattern(pattern: str, p_local: np.ndarray, frequency: float,
             front_fraction: float) -> np.ndarray:
  """[N, 3] unit-space points -> [N] bool selecting the second texture colour."""
  if pattern == "solid":
    return np.zeros(p_local.shape[0], bool)
  if pattern == "front":
    return p_local[:, 0] > front_fraction
  cells = np.floor(p_local * frequency).astype(np.int64)
  if pattern == "checker":
    return (cells.sum(axis=-1) % 2) == 1
  if pattern == "stripes":
    return (cells[:, 2] % 2) == 1
  raise ValueError(f"Unknown pattern {pattern!r}; expected one of {PATTERNS}.")


def render_frame(scene: dict[str, Any], poses: dict[str, np.ndarray], intrinsics: np.ndarray,
                 config: SceneConfig) -> dict[str, np.ndarray]:
  """Ray-casts one frame.

  Returns:
    rgb [H, W, 3] uint8; depth [H, W] float (distance to the camera centre; `far` for sky);
    segmentation [H, W] uint8 (0 = background, k + 1 = object k); normal [H, W, 3] world unit
    normals; object_coordinates [H, W, 3] in [0, 1] (position inside the object's box).
  """
  h, w = config.height, config.width
  origin, dirs = camera_rays(poses["cam_to_world"], intrinsics, h, w)
  n = dirs.shape[0]
  best_t = np.full(n, np.inf)
  seg = np.zeros(n, np.int64)
  normals = np.zeros((n, 3))
  normals[:, 2] = 1.0
  colors = np.zeros((n, 3))
  obj_coords = np.zeros((n, 3))
  # Ground plane z = 0.
  with np.errstate(divide="ignore", invalid="ignore"):
    t_ground = np.where(dirs[:, 2] < -1e-9, -origin[2] / dirs[:, 2], np.inf)
  ground_hit = np.isfinite(t_ground) & (t_ground < config.far)
  best_t = np.where(ground_hit, t_ground, np.inf)
  p_ground = origin + np.where(ground_hit, t_ground, 0)[:, None] * dirs
  cell = np.floor(p_ground[:, :2] / config.checker_period).astype(np.int64).sum(-1) % 2
  if config.ground_pattern == "solid":
    cell = np.zeros_like(cell)
  colors[:] = np.where(ground_hit[:, None], scene["ground"][cell], scene["sky"])
  for k, shape_id in enumerate(scene["shapes"]):
    rot, center = poses["rotations"][k], poses["centers"][k]
    half = scene["sizes"][k] / 2
    # World -> unit space: p_l = S^-1 R^T (p - c).
    # Cull with the bounding sphere first: only rays that can hit are intersected exactly.
    offset = origin - center
    b = _dot(dirs, offset)
    candidates = np.nonzero(b * b - (offset @ offset - half @ half) >= 0)[0]
    if candidates.size == 0:
      continue
    o_l = (rot.T @ offset) / half
    d_l = _matvec(rot.T, dirs[candidates]) / half
    t_c, n_c = _intersect_unit(SHAPES[shape_id], o_l, d_l)
    closer = t_c < best_t[candidates]
    if not np.any(closer):
      continue
    idx = candidates[closer]
    best_t[idx] = t_c[closer]
    seg[idx] = k + 1
    n_w = _matvec(rot, n_c[closer] / half)
    normals[idx] = n_w / np.linalg.norm(n_w, axis=-1, keepdims=True)
    p_l = o_l + t_c[closer, None] * d_l[closer]
    second = _pattern(PATTERNS[scene["patterns"][k]], p_l, config.texture_frequency,
                      config.front_fraction)
    colors[idx] = scene["colors"][k][second.astype(np.int64)]
    obj_coords[idx] = np.clip((p_l + 1) / 2, 0, 1)
  light = np.asarray(config.light_direction, np.float64)
  light = light / np.linalg.norm(light)
  hit = np.isfinite(best_t)
  # Light both faces of a surface the camera sees (normals may face away on thin objects).
  facing = np.where((np.einsum("ni,ni->n", normals, dirs) > 0)[:, None], -normals, normals)
  lambert = np.clip(_dot(facing, light), 0, 1)
  shade = np.where(hit, config.ambient + (1 - config.ambient) * lambert, 1.0)
  rgb = np.clip(colors * shade[:, None] * 255 + 0.5, 0, 255).astype(np.uint8)
  depth = np.where(hit, best_t, config.far)
  return dict(rgb=rgb.reshape(h, w, 3), depth=depth.reshape(h, w),
              segmentation=seg.reshape(h, w).astype(np.uint8),
              normal=np.where(hit[:, None], normals, 0).reshape(h, w, 3),
              object_coordinates=obj_coords.reshape(h, w, 3))


# ------------------------------------------------------------------------------------------------
# Scene states: one static 3D scene, rendered exactly as the generator renders its frames. Ground
# truth for edits (data_pipelines/synthetic_edits.py): change a state's objects / camera /
# background and render it again.


@dataclasses.dataclass(frozen=True, eq=False)
class SceneState:
  """Everything `render_frame` draws for one frame (K objects).

  Attributes:
    shapes: [K] int index into SHAPES; patterns: [K] int index into PATTERNS.
    sizes: [K, 3] full extents along each object's own axes; centers: [K, 3] world frame.
    rotations: [K, 3, 3] object-to-world.
    colors: [K, 2, 3] the two texture colours in [0, 1].
    ground: [2, 3] the ground's checker colours; sky: [3].
    cam_to_world: [4, 4] OpenCV camera-to-world; intrinsics: [3, 3] normalised.
    instance_ids: [K] int: which object of the source video each one is (duplicates repeat ids).
  """
  shapes: np.ndarray
  patterns: np.ndarray
  sizes: np.ndarray
  centers: np.ndarray
  rotations: np.ndarray
  colors: np.ndarray
  ground: np.ndarray
  sky: np.ndarray
  cam_to_world: np.ndarray
  intrinsics: np.ndarray
  instance_ids: np.ndarray

  def __post_init__(self):
    k = len(np.asarray(self.shapes))
    shapes = {"patterns": (k,), "sizes": (k, 3), "centers": (k, 3), "rotations": (k, 3, 3),
              "colors": (k, 2, 3), "ground": (2, 3), "sky": (3,), "cam_to_world": (4, 4),
              "intrinsics": (3, 3), "instance_ids": (k,)}
    for name, shape in shapes.items():
      if np.shape(getattr(self, name)) != shape:
        raise ValueError(f"SceneState.{name} must have shape {shape} for {k} objects, got "
                         f"{np.shape(getattr(self, name))}.")
    if k and (np.min(self.shapes) < 0 or np.max(self.shapes) >= len(SHAPES)):
      raise ValueError(f"SceneState.shapes must index SHAPES {SHAPES}, got {self.shapes}.")
    if k and np.any(np.asarray(self.sizes) <= 0):
      raise ValueError("SceneState.sizes must be positive.")

  @property
  def num_objects(self) -> int:
    return len(self.shapes)

  def replace(self, **fields) -> "SceneState":
    return dataclasses.replace(self, **fields)

  def subset(self, indices) -> "SceneState":
    """The state with only objects `indices` (in that order; repeats allowed)."""
    keep = np.asarray(indices, np.int64).reshape(-1)
    per_object = ("shapes", "patterns", "sizes", "centers", "rotations", "colors",
                  "instance_ids")
    return dataclasses.replace(self, **{n: np.asarray(getattr(self, n))[keep]
                                        for n in per_object})


def state_at(seed: int, index: int, frame: int, config: SceneConfig = SceneConfig()) -> SceneState:
  """Frame `frame` of video `index` of stream `seed` (as `generate_example` draws it) as a state.

  Every object of the video is included (visible or not); `instance_ids[k] = k`, as in the
  video record (`movi_e.example_to_video_record`).
  """
  if not 0 <= frame < config.num_frames:
    raise ValueError(f"Frame {frame} out of range for videos of {config.num_frames} frames.")
  scene = sample_scene(np.random.default_rng([seed, index]), config)
  poses = scene_at(scene, frame)
  intrinsics = geometry.kubric_intrinsics(config.focal_length, config.sensor_width,
                                          config.height, config.width).astype(np.float64)
  return SceneState(shapes=scene["shapes"], patterns=scene["patterns"], sizes=scene["sizes"],
                    centers=poses["centers"], rotations=poses["rotations"],
                    colors=scene["colors"], ground=scene["ground"], sky=scene["sky"],
                    cam_to_world=poses["cam_to_world"], intrinsics=intrinsics,
                    instance_ids=np.arange(len(scene["shapes"])))


def render_state(state: SceneState, config: SceneConfig = SceneConfig(),
                 resolution: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
  """Ray-casts a state with `render_frame` (the generator's renderer and shading).

  Args:
    state: the scene; config: shading / ground knobs (its height, width unless `resolution`).
    resolution: (H, W) to render at (the normalised intrinsics fit any size).

  Returns:
    `render_frame`'s outputs (rgb [H, W, 3] uint8, depth, segmentation = k + 1 for state object
    k, normal, object_coordinates) plus masks [K, H, W] bool: the visible pixels of each object.
  """
  if state.num_objects > 254:
    raise ValueError("At most 254 objects fit the uint8 segmentation.")
  if resolution is not None:
    config = dataclasses.replace(config, height=int(resolution[0]), width=int(resolution[1]))
  scene = dict(shapes=np.asarray(state.shapes, np.int64), sizes=np.asarray(state.sizes, np.float64),
               colors=np.asarray(state.colors, np.float64),
               patterns=np.asarray(state.patterns, np.int64),
               ground=np.asarray(state.ground, np.float64), sky=np.asarray(state.sky, np.float64))
  poses = dict(centers=np.asarray(state.centers, np.float64),
               rotations=np.asarray(state.rotations, np.float64),
               cam_to_world=np.asarray(state.cam_to_world, np.float64))
  out = render_frame(scene, poses, np.asarray(state.intrinsics, np.float64), config)
  ids = np.arange(1, state.num_objects + 1)[:, None, None]
  out["masks"] = out["segmentation"][None].astype(np.int64) == ids
  return out


# ------------------------------------------------------------------------------------------------
# MOVi-E-schema example.


def _quantize(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
  """Kubric's uint16 quantisation of [lo, hi] (round to nearest; values are >= lo)."""
  scale = 65535.0 / (hi - lo) if hi > lo else 0.0
  return np.clip((x - lo) * scale + 0.5, 0, 65535).astype(np.uint16)


def _check_motion_knobs(config: SceneConfig) -> None:
  """Raises ValueError naming a 3D-motion knob out of its range."""
  problems = []
  for name in ("aspect_range", "scale_range"):
    lo, hi = getattr(config, name)
    if not 0 < lo <= hi:
      problems.append(f"{name} must be 0 < lo <= hi, got {(lo, hi)}")
  if not 0 <= config.min_spin <= config.max_spin:
    problems.append(f"need 0 <= min_spin <= max_spin, got {config.min_spin}, {config.max_spin}")
  if config.depth_speed < 0:
    problems.append(f"depth_speed must be >= 0, got {config.depth_speed}")
  if config.dolly_distance is not None and not 0 < config.dolly_distance[0] <= \
      config.dolly_distance[1]:
    problems.append(f"dolly_distance must be 0 < near <= far, got {config.dolly_distance}")
  if problems:
    raise ValueError("SceneConfig: " + "; ".join(problems) + ".")


def generate_example(seed: int, index: int, config: SceneConfig = SceneConfig()) -> dict[str, Any]:
  """Renders video `index` of the stream `seed` in the decoded MOVi-E layout (deterministic).

  Returns:
    Nested dict: video [T, H, W, 3] uint8, segmentations [T, H, W, 1] uint8, depth [T, H, W, 1]
    uint16 (+ metadata/depth_range), normal / object_coordinates [T, H, W, 3] uint16,
    forward_flow / backward_flow [T, H, W, 2] uint16 zeros, camera/..., instances/... ([K, ...]
    arrays; bboxes / bbox_frames as lists of K arrays), metadata/..., background, events.
  """
  if config.min_objects < 1 or config.max_objects < config.min_objects:
    raise ValueError(f"Need 1 <= min_objects <= max_objects, got {config.min_objects}, "
                     f"{config.max_objects}.")
  unknown = set(config.patterns) - set(PATTERNS)
  if not config.patterns or unknown or config.ground_pattern not in ("checker", "solid"):
    raise ValueError(f"patterns must be a non-empty subset of {PATTERNS} (got "
                     f"{config.patterns}) and ground_pattern 'checker' or 'solid' (got "
                     f"{config.ground_pattern!r}).")
  if config.max_objects > 254:
    raise ValueError("At most 254 objects fit the uint8 segmentation.")
  _check_motion_knobs(config)
  rng = np.random.default_rng([seed, index])
  scene = sample_scene(rng, config)
  t_frames, h, w = config.num_frames, config.height, config.width
  k_objects = len(scene["shapes"])
  intrinsics = geometry.kubric_intrinsics(config.focal_length, config.sensor_width, h, w)
  intrinsics = intrinsics.astype(np.float64)
  frames, depths, segs, normals, coords = [], [], [], [], []
  obj_centers, obj_rots, cam_poses = [], [], []
  for f in range(t_frames):
    poses = scene_at(scene, f)
    out = render_frame(scene, poses, intrinsics, config)
    frames.append(out["rgb"])
    depths.append(out["depth"])
    segs.append(out["segmentation"])
    normals.append(out["normal"])
    coords.append(out["object_coordinates"])
    obj_centers.append(poses["centers"])
    obj_rots.append(poses["rotations"])
    cam_poses.append(poses["cam_to_world"])
  depth = np.stack(depths)[..., None]
  depth_range = np.array([depth.min(), depth.max()], np.float32)
  seg = np.stack(segs)[..., None]
  centers = np.stack(obj_centers, axis=1)  # [K, T, 3]
  rotations = np.stack(obj_rots, axis=1)  # [K, T, 3, 3]
  cam_to_world = np.stack(cam_poses)  # [T, 4, 4] OpenCV
  blender_c2w = geometry.blender_to_opencv(cam_to_world)  # the axis flip is its own inverse.
  corners = geometry.box_corners(centers, scene["sizes"][:, None, :], rotations)  # [K, T, 8, 3]
  w2c = geometry.invert_pose(cam_to_world)
  uv, _ = geometry.project(geometry.transform_points(w2c[None], centers), intrinsics)
  counts = np.stack([(seg[..., 0] == k + 1).sum(axis=(1, 2)) for k in range(k_objects)])
  bboxes, bbox_frames = [], []
  for k in range(k_objects):
    frames_k = np.nonzero(counts[k])[0]
    boxes_k = []
    for f in frames_k:
      ys, xs = np.nonzero(seg[f, ..., 0] == k + 1)
      boxes_k.append([ys.min() / h, xs.min() / w, (ys.max() + 1) / h, (xs.max() + 1) / w])
    bboxes.append(np.asarray(boxes_k, np.float32).reshape(-1, 4))
    bbox_frames.append(frames_k.astype(np.int32))
  velocities = np.broadcast_to(scene["velocities"][:, None], (k_objects, t_frames, 3))
  ang_vel = np.broadcast_to((scene["axes"] * scene["spins"][:, None])[:, None],
                            (k_objects, t_frames, 3))
  float32 = lambda x: np.asarray(x, np.float32)  # pylint: disable=unnecessary-lambda-assignment
  unit16 = lambda x: _quantize((np.stack(x) + 1) / 2, 0.0, 1.0)  # [-1, 1] -> uint16.
  return {
      "metadata": {
          "video_name": f"synthetic_{seed}_{index:06d}".encode(),
          "width": np.int32(w), "height": np.int32(h), "num_frames": np.int32(t_frames),
          "num_instances": np.uint16(k_objects), "depth_range": depth_range,
          "forward_flow_range": np.zeros(2, np.float32),
          "backward_flow_range": np.zeros(2, np.float32),
      },
      "background": b"procedural",
      "camera": {
          "focal_length": np.float32(config.focal_length),
          "sensor_width": np.float32(config.sensor_width),
          "field_of_view": np.float32(2 * np.arctan2(config.sensor_width / 2,
                                                     config.focal_length)),
          "positions": float32(blender_c2w[:, :3, 3]),
          "quaternions": float32(geometry.matrix_to_quaternion(blender_c2w[:, :3, :3])),
      },
      "instances": {
          "mass": np.ones(k_objects, np.float32),
          "friction": np.full(k_objects, 0.5, np.float32),
          "restitution": np.full(k_objects, 0.5, np.float32),
          "positions": float32(centers),
          "quaternions": float32(geometry.matrix_to_quaternion(rotations)),
          "velocities": float32(velocities),
          "angular_velocities": float32(ang_vel),
          "bboxes_3d": float32(corners),
          "image_positions": float32(uv),
          "bboxes": bboxes,
          "bbox_frames": bbox_frames,
          "visibility": np.minimum(counts, 65535).astype(np.uint16),
          "asset_id": np.array([SHAPES[s].encode() for s in scene["shapes"]], dtype=object),
          "category": scene["shapes"].astype(np.int64),
          "scale": float32(scene["sizes"].max(axis=-1)),
          "is_dynamic": scene["dynamic"].astype(bool),
      },
      "events": {"collisions": []},
      "video": np.stack(frames),
      "segmentations": seg,
      "depth": _quantize(depth, *depth_range),
      "normal": unit16(normals),
      "object_coordinates": _quantize(np.stack(coords), 0.0, 1.0),
      "forward_flow": np.zeros((t_frames, h, w, 2), np.uint16),
      "backward_flow": np.zeros((t_frames, h, w, 2), np.uint16),
  }


# ------------------------------------------------------------------------------------------------
# CLI.


def _record_worker(args):
  seed, index, config, image_format = args
  from data_pipelines import movi_e  # pylint: disable=g-import-not-at-top
  return movi_e.example_to_video_record(generate_example(seed, index, config), image_format)


def generate_records(seed: int, num_videos: int, config: SceneConfig, image_format: str = "png",
                     num_workers: int = 1):
  """Yields video records of videos 0..num_videos-1 of stream `seed`, in order."""
  jobs = [(seed, i, config, image_format) for i in range(num_videos)]
  if num_workers <= 1:
    yield from map(_record_worker, jobs)
    return
  with multiprocessing.get_context("spawn").Pool(num_workers) as pool:
    yield from pool.imap(_record_worker, jobs)


def _convert_video(index: int, seed: int, config: SceneConfig, image_format: str):
  from data_pipelines import dataset_conversion as conversion  # pylint: disable=g-import-not-at-top
  yield conversion.guarded(f"synthetic_{seed}_{index:06d}",
                           lambda: _record_worker((seed, index, config, image_format)))


def conversion_plan(out_dir: str, num_videos: int, config: SceneConfig, seed: int = 0,
                    split: str = "train", records_per_shard: int = 256,
                    image_format: str = "png", options: str | None = None):
  """The shards the CLI writes (`{split}.array_record-XXXXX-of-YYYYY`), one input per video, as a
  `conversion.ConversionPlan` for `data_pipelines.beam_convert`."""
  import functools  # pylint: disable=g-import-not-at-top
  from data_pipelines import dataset_conversion as conversion  # pylint: disable=g-import-not-at-top
  from data_pipelines import video_record  # pylint: disable=g-import-not-at-top
  shards = conversion.chunked_shards(
      list(range(num_videos)), records_per_shard,
      lambda n, count: os.path.join(out_dir, f"{split}.array_record-{n:05d}-of-{count:05d}"))
  return conversion.ConversionPlan(
      shards, functools.partial(_convert_video, seed=seed, config=config,
                                image_format=image_format),
      options=options or video_record.DEFAULT_OPTIONS)


# How `export_video_dir` writes video i: EXPORT_STYLES[i % 3]. The first is the record's own
# convention; the others make the folder-format reader convert (OpenGL camera-to-world poses with
# pixel intrinsics, as ARKit / NeRF-style data; Blender world-to-camera), and both rotation keys.
EXPORT_STYLES = (
    dict(pose_type="world_to_camera", camera_convention="opencv", intrinsics_units="normalized",
         rotation_format="matrix"),
    dict(pose_type="camera_to_world", camera_convention="opengl", intrinsics_units="pixels",
         rotation_format="quaternion"),
    dict(pose_type="world_to_camera", camera_convention="blender", intrinsics_units="pixels",
         rotation_format="quaternion"),
)


def export_video_dir(out_dir: str, num_videos: int, config: SceneConfig, seed: int = 0,
                     image_format: str = "png", num_workers: int = 1) -> list[str]:
  """Writes videos 0..num_videos-1 of stream `seed` in the folder format of
  `data_pipelines.videos` (one directory per video, named by its video id, styles cycling
  through EXPORT_STYLES); `python -m data_pipelines.videos --input out_dir` converts them back
  to the records `generate_records` yields. Returns the video directories."""
  from data_pipelines import videos  # pylint: disable=g-import-not-at-top
  dirs = []
  records = generate_records(seed, num_videos, config, image_format, num_workers)
  for index, record in enumerate(records):
    dirs.append(os.path.join(out_dir, record["video_id"].decode()))
    videos.write_video_dir(record, dirs[-1], **EXPORT_STYLES[index % len(EXPORT_STYLES)])
  return dirs


def scene_config(scene_json: str = "{}", **fields) -> SceneConfig:
  """SceneConfig from keyword fields plus a JSON object of more fields (lists become tuples).

  Raises:
    ValueError: a key that is not a SceneConfig field.
  """
  import json  # pylint: disable=g-import-not-at-top
  extra = json.loads(scene_json) if isinstance(scene_json, str) else dict(scene_json)
  known = {f.name for f in dataclasses.fields(SceneConfig)}
  unknown = set(extra) - known
  if unknown:
    raise ValueError(f"Unknown SceneConfig fields {sorted(unknown)}; known: {sorted(known)}.")
  extra = {k: tuple(v) if isinstance(v, list) else v for k, v in extra.items()}
  return SceneConfig(**{**extra, **fields})


def main(argv=None):
  parser = argparse.ArgumentParser(
      prog="python -m data_pipelines.synthetic", description=__doc__.split("\n")[0],
      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  count = range_checks.int_at_least
  parser.add_argument("--out_dir", default=None,
                      help="Where to write the video-record shards (<split>.array_record-NNNNN-of-NNNNN).")
  parser.add_argument("--export_videos", default=None,
                      help="Also (or instead) write the videos in the folder format of "
                           "data_pipelines.videos here: one directory per video.")
  parser.add_argument("--num_videos", type=count(1), default=16, help="Videos to render.")
  parser.add_argument("--resolution", type=count(1), default=128,
                      help="Square frame size in pixels (height = width).")
  parser.add_argument("--num_frames", type=count(1), default=8, help="Frames per video.")
  parser.add_argument("--seed", type=int, default=0,
                      help="Seed of video 0; video i uses (seed, i), so splits with different "
                           "seeds share no scene.")
  parser.add_argument("--split", default="train",
                      help="Split name: the shard file-name prefix the data configs glob for "
                           "(train*, eval*).")
  parser.add_argument("--min_objects", type=count(1), default=SceneConfig.min_objects,
                      help="Fewest objects per scene.")
  parser.add_argument("--max_objects", type=count(1), default=SceneConfig.max_objects,
                      help="Most objects per scene (>= --min_objects).")
  parser.add_argument("--records_per_shard", type=count(1), default=256,
                      help="Videos per ArrayRecord shard file.")
  parser.add_argument("--image_format", default="png", choices=("png", "jpeg"),
                      help="Encoding of the frames inside each record.")
  parser.add_argument("--num_workers", type=count(1), default=1,
                      help="Processes rendering videos in parallel.")
  parser.add_argument("--scene_json", default="{}",
                      help="JSON object of further SceneConfig fields, e.g. "
                           "'{\"max_speed\": 0.4, \"patterns\": [\"solid\"]}'.")
  parser.add_argument("--tfds_dir", default=None,
                      help="Also write the videos as a TFDS movi_e dataset here (needs TF).")
  args = parser.parse_args(argv)
  if not args.out_dir and not args.export_videos:
    parser.error("Give --out_dir (records), --export_videos (video folders) or both.")
  if args.max_objects < args.min_objects:
    parser.error(f"--max_objects={args.max_objects} is below --min_objects={args.min_objects}.")
  logging.basicConfig(level=logging.INFO)
  from data_pipelines import movi_e  # pylint: disable=g-import-not-at-top
  config = scene_config(args.scene_json, height=args.resolution, width=args.resolution,
                        num_frames=args.num_frames, min_objects=args.min_objects,
                        max_objects=args.max_objects)
  if args.export_videos:
    dirs = export_video_dir(args.export_videos, args.num_videos, config, args.seed,
                            args.image_format, args.num_workers)
    print(f"Wrote {len(dirs)} video folders to {args.export_videos}.")
  if not args.out_dir:
    return
  start = time.time()
  records = generate_records(args.seed, args.num_videos, config, args.image_format,
                             args.num_workers)
  paths = movi_e.write_shards(records, args.out_dir, args.split, args.num_videos,
                              args.records_per_shard)
  seconds = time.time() - start
  frames = args.num_videos * args.num_frames
  print(f"Wrote {args.num_videos} videos ({frames} frames) to {len(paths)} shards in "
        f"{args.out_dir}: {seconds:.1f} s, {frames / seconds:.1f} frames/s.")
  if args.tfds_dir:
    examples = (generate_example(args.seed, i, config) for i in range(args.num_videos))
    path = movi_e.write_tfds(args.tfds_dir, {args.split: examples}, config.height, config.width,
                             config.num_frames)
    print(f"Wrote the TFDS dataset to {path}")


if __name__ == "__main__":
  main()
