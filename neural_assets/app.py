r"""An interactive scene editor in the browser (Gradio) on a trained Neural Assets model.

  python -m neural_assets.app [--checkpoint WORKDIR] [--scenes DIR] [--port 7860] [--share]

With no arguments it opens the demo's run (`bash demo.sh`: checkpoint under ./workdir/demo, its
held-out scenes in ./workdir/demo/scenes/*.npz). Scenes are `.npz` files of
`editing.Scene.save` or `editing.Edit.save` (edited scenes, e.g. downloaded from this app); with
none found, two synthetic scenes are rendered (the demo's generator). Serves on 127.0.0.1 only; a
public Gradio link only with --share.

In the page: pick a scene; its frame is shown with every object's 3D box drawn as a wireframe
(projected corners) and its index. Click an object (or choose it in the list), then move it (x,
y, z in the world or camera frame), rotate it (yaw, pitch, roll about its own axes), rescale,
remove or duplicate it, insert an object of another scene, swap the background, or move / orbit
the camera. The wireframes follow each edit at once (geometry only: `neural_assets.editing.ops`);
"Render" runs the model (DDIM with classifier-free guidance; steps and guidance are controls)
and shows the edit beside the source. An edit that would put an object behind the camera or off
screen is refused with the editing API's message unless "apply even if invalid" is ticked.
Undo / reset; the render downloads as PNG, the edit as an `.npz` that `python -m
neural_assets.edit_cli --scene` accepts. "Render motion" renders a trajectory on top of the current
edit (an op whose numbers may be paths, e.g. `rotate 1 yaw=0:360:12`: the grammar of
`neural_assets.editing.trajectory`) with a progress bar per frame batch, plays it inline (MP4)
and offers it as an animated GIF.

The model is loaded once through `neural_assets.inference`; the page's state (the list of edits
made so far) lives per browser session.
"""
from __future__ import annotations

import argparse
import dataclasses
import glob
import os
import sys
import tempfile
import threading
import uuid
from typing import Any, Callable, Sequence

import gradio as gr
import numpy as np
from PIL import Image

from neural_assets import editing
from neural_assets import inference
from neural_assets.editing import draw
from neural_assets.editing import trajectory as trajectory_lib
from neural_assets.images import slug

# Where `bash demo.sh` trains (REPO/workdir/demo) and where `python -m neural_assets.demo` does by
# default (./workdir/demo): the first that exists.
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_WORKDIR = next((p for p in (os.path.join(".", "workdir", "demo"),
                                    os.path.join(_REPO, "workdir", "demo")) if os.path.isdir(p)),
                       os.path.join(".", "workdir", "demo"))
# How the page tells the user to force a refused edit (the API's `allow_invalid=True`).
FORCE_HINT = 'Tick "Apply even if invalid" to apply it anyway'
DISPLAY_WIDTH = 384  # Pixels of the shown frames (small model frames are upscaled, nearest).
DEFAULT_MOTION = "rotate 0 yaw=0:330:12"  # A full turn in 12 frames (330 + 30 = 360: loops).


@dataclasses.dataclass(frozen=True)
class Session:
  """One browser session's editing state (immutable; every action returns a new one).

  Attributes:
    scene: name of the scene being edited (a key of `Editor.scenes`).
    history: the edits so far, oldest first; history[0] is the scene as loaded.
    selected: index into the current edit's assets, or None.
    message: what the page says about the last action (Markdown).
    past_selected: the selection while each earlier history entry was current (undo restores it).
  """
  scene: str
  history: tuple[editing.Edit, ...]
  selected: int | None = None
  message: str = ""
  past_selected: tuple[int | None, ...] = ()

  @property
  def edit(self) -> editing.Edit:
    return self.history[-1]


class Editor:
  """The app's logic without the page: scenes, edit actions, undo, drawing and rendering.

  Every action takes a `Session` and returns a new one; a refused edit returns the same edit
  with the editing API's message.
  """

  def __init__(self, bundle: inference.ModelBundle, scenes: dict[str, editing.Edit],
               out_dir: str | None = None):
    if not scenes:
      raise ValueError("The app needs at least one scene.")
    self.bundle, self.scenes = bundle, scenes
    self.out_dir = out_dir or tempfile.mkdtemp(prefix="neural_assets_app_")
    os.makedirs(self.out_dir, exist_ok=True)

  # -- Sessions.

  def start(self, name: str | None = None) -> Session:
    name = name if name in self.scenes else next(iter(self.scenes))
    edit = self.scenes[name]
    return Session(scene=name, history=(edit,), selected=_first_active(edit),
                   message=f"Scene **{name}**: {_describe(edit)}. Click an object to select it.")

  def undo(self, session: Session) -> Session:
    if len(session.history) == 1:
      return dataclasses.replace(session, message="Nothing to undo.")
    return _with_selection(dataclasses.replace(
        session, history=session.history[:-1], past_selected=session.past_selected[:-1],
        message=f"Undone: {session.edit.steps[-1]}."), session.past_selected[-1])

  def reset(self, session: Session) -> Session:
    return dataclasses.replace(self.start(session.scene), message="Reset to the scene as loaded.")

  def select(self, session: Session, index: int | None) -> Session:
    if index is None or not 0 <= index < len(session.edit.assets):
      return dataclasses.replace(session, selected=None, message="No object selected.")
    if session.edit.assets[index].removed:
      return dataclasses.replace(session, message=f"Object {index} was removed.")
    return dataclasses.replace(session, selected=index, message=f"Selected object {index}.")

  def click(self, session: Session, x: float, y: float, width: int, height: int) -> Session:
    """Selects the object under pixel (x, y) of a shown frame of `width` x `height` pixels."""
    index = draw.pick_object(session.edit, (x + 0.5) / width, (y + 0.5) / height)
    return self.select(session, index)

  # -- Edits.

  def apply(self, session: Session, op: Callable[[editing.Edit], editing.Edit],
            needs_object: bool = True) -> Session:
    """Applies `op` to the current edit; a refusal (or any EditError) becomes the message."""
    if needs_object and session.selected is None:
      return dataclasses.replace(session, message="Select an object first (click it).")
    try:
      new = op(session.edit)
    except editing.EditRefused as e:
      return dataclasses.replace(session, message=f"**Refused.** {e.message(FORCE_HINT)}")
    except editing.EditError as e:
      return dataclasses.replace(session, message=f"**Refused.** {e}")
    selected = session.selected
    if len(new.assets) > len(session.edit.assets):  # duplicate / insert: select the new object.
      selected = len(new.assets) - 1
    message = f"Applied: {new.steps[-1]}."
    if not new.active().all():
      off = [k for k, on in enumerate(new.active()) if not on and not new.assets[k].removed]
      if off:
        message += (f" Objects {off} are invalid in this view (red) and will be left out of the "
                    "render.")
    return _with_selection(dataclasses.replace(
        session, history=session.history + (new,), message=message,
        past_selected=session.past_selected + (session.selected,)), selected)

  def donor(self, name: str) -> editing.Scene:
    if name not in self.scenes:
      raise editing.EditError(f"No scene named {name!r}.")
    return self.scenes[name].source

  # -- Pictures.

  def wireframes(self, session: Session) -> np.ndarray:
    """[H', W', 3] the source frame with the current edit's boxes (target camera) drawn."""
    return draw.draw_wireframes(session.edit.source.image, session.edit, session.selected,
                                DISPLAY_WIDTH)

  def render(self, session: Session, num_steps: int, guidance_scale: float, seed: int,
             progress: Callable[[float, str], Any] | None = None) -> tuple[np.ndarray, str]:
    """Renders the current edit: ([H, W, 3] uint8 at the model's resolution, PNG path)."""
    progress = progress or (lambda *_: None)
    _check_sampling(num_steps, guidance_scale)
    progress(0.05, f"Sampling {int(num_steps)} DDIM steps (the first render also compiles)")
    image = editing.render(self.bundle, session.edit.source, session.edit,
                           guidance_scale=float(guidance_scale), num_steps=int(num_steps),
                           seed=int(seed))[0, 0]
    progress(0.95, "Writing the PNG")
    path = _fresh_path(self.out_dir, "render", session.scene, ".png")
    Image.fromarray(image).save(path)
    return image, path

  def render_motion(self, session: Session, spec: str, num_steps: int, guidance_scale: float,
                    seed: int, fps: float = trajectory_lib.DEFAULT_FPS, shared_noise: bool = True,
                    progress: Callable[[float, str], Any] | None = None,
                    donor: str | None = None) -> tuple[np.ndarray, str, str]:
    """Renders trajectory `spec` on top of the current edit (`donor`: the scene that `insert` /
    `background` in the spec take from).

    Returns:
      ([F, H, W, 3] uint8 frames at the model's resolution, MP4 path, GIF path); the videos are
      upscaled (nearest) to about DISPLAY_WIDTH wide, as the shown stills.

    Raises:
      editing.EditError: a bad setting; trajectory.TrajectoryError: a bad spec or refused frame.
    """
    progress = progress or (lambda *_: None)
    _check_sampling(num_steps, guidance_scale)
    if not np.isfinite(fps) or fps <= 0:
      raise editing.EditError(f"Frames per second must be a positive number, got {fps}.")
    other = self.donor(donor) if donor is not None else None
    edits = trajectory_lib.build_trajectory(session.edit, spec, other)
    progress(0.0, f"Sampling {len(edits)} frames, {int(num_steps)} DDIM steps each (the first "
             "render also compiles)")
    frames = trajectory_lib.render_frames(
        self.bundle, edits, seed=int(seed), shared_noise=bool(shared_noise),
        guidance_scale=float(guidance_scale), num_steps=int(num_steps),
        progress=lambda done, total: progress(done / total, f"{done}/{total} frames rendered"))
    stem = _fresh_path(self.out_dir, "motion", session.scene)
    mp4, gif = trajectory_lib.write_videos(frames, stem, ("mp4", "gif"), float(fps),
                                           _video_scale(frames.shape[1:3]))
    return frames, mp4, gif

  def warm_up(self) -> None:
    """Renders the first scene once at the config's sampling steps (compiles the sampler)."""
    steps = int(self.bundle.config.sampler.num_inference_steps)
    scale = float(self.bundle.config.sampler.guidance_scale)
    self.render(self.start(), steps, scale, 0)

  def save_edit(self, session: Session) -> str:
    """Writes the current edit as `.npz` (`Edit.save`) and returns its path (a fresh name: several
    browser sessions share the directory)."""
    path = _fresh_path(self.out_dir, "edited", session.scene, ".npz")
    session.edit.save(path)
    return path


def _check_sampling(num_steps: int, guidance_scale: float) -> None:
  if not np.isfinite(guidance_scale):
    raise editing.EditError(f"Guidance scale must be a finite number, got {guidance_scale}.")
  if int(num_steps) < 1:
    raise editing.EditError(f"Sampling steps must be >= 1, got {num_steps}.")


def _video_scale(size: tuple[int, int]) -> int:
  """The integer upscaling of [H, W] frames to >= DISPLAY_WIDTH wide (as `draw.upscaled`), made
  even where needed: MP4's yuv420p wants an even height and width."""
  factor = max(1, -(-DISPLAY_WIDTH // size[1]))
  if any((n * factor) % trajectory_lib.MP4_SIZE_MULTIPLE for n in size):
    factor *= trajectory_lib.MP4_SIZE_MULTIPLE
  return factor


def _first_active(edit: editing.Edit) -> int | None:
  active = np.flatnonzero(edit.active())
  return int(active[0]) if active.size else None


def _with_selection(session: Session, selected: int | None) -> Session:
  """`selected` if it is still a live object of the session's edit, else the first live one."""
  edit = session.edit
  if selected is not None and 0 <= selected < len(edit.assets) and not edit.assets[
      selected].removed:
    return dataclasses.replace(session, selected=selected)
  return dataclasses.replace(session, selected=_first_active(edit))


def _describe(edit: editing.Edit) -> str:
  live = sum(not a.removed for a in edit.assets)
  return f"{live} object(s)" + (f", {len(edit.steps)} edit(s) loaded" if edit.steps else "")


def _fresh_path(out_dir: str, kind: str, scene: str, ext: str = "") -> str:
  """OUT_DIR/<kind>_<scene slug>_<random>EXT: a fresh name (several browser sessions share the
  directory)."""
  return os.path.join(out_dir, f"{kind}_{slug(scene, default='scene')}_{uuid.uuid4().hex[:8]}{ext}")


def object_choices(edit: editing.Edit) -> list[tuple[str, int]]:
  """(label, index) of every live object, for the object list."""
  valid = edit.validity()[0]
  out = []
  for k, asset in enumerate(edit.assets):
    if asset.removed:
      continue
    origin = "" if asset.scene == 0 else f" (from scene {asset.scene})"
    out.append((f"{k}: instance {asset.instance_id}{origin}" + ("" if valid[k] else " [invalid]"),
                k))
  return out


# ------------------------------------------------------------------------------------------------
# Scenes.


def load_scenes(directory: str | None, bundle: inference.ModelBundle,
                num_synthetic: int = 2) -> dict[str, editing.Edit]:
  """name -> starting edit, from `directory`'s `.npz` files (scenes or edits).

  Scenes with more objects than the model's slots keep their largest ones (as the training
  pipeline does). Without a directory (or with an empty one), `num_synthetic` synthetic scenes.
  """
  scenes = {}
  paths = sorted(glob.glob(os.path.join(directory, "*.npz"))) if directory else []
  if directory and not os.path.isdir(directory):
    raise FileNotFoundError(f"--scenes {directory} is not a directory (want one holding scene "
                            ".npz files, e.g. the demo's WORKDIR/scenes).")
  for path in paths:
    loaded = editing.load_scene_or_edit(path)
    if isinstance(loaded, editing.Scene):
      loaded = editing.as_edit(loaded.keep_largest(bundle.max_objects))
    scenes[os.path.splitext(os.path.basename(path))[0]] = loaded
  if not scenes:
    for seed in range(num_synthetic):
      scenes[f"synthetic_{seed}"] = editing.as_edit(
          synthetic_scene(seed, bundle).keep_largest(bundle.max_objects))
  return scenes


def synthetic_scene(seed: int, bundle: inference.ModelBundle) -> editing.Scene:
  """A scene rendered by the demo's synthetic generator at the model's resolution."""
  from data_pipelines import synthetic  # pylint: disable=g-import-not-at-top
  size = max(bundle.resolution)
  config = synthetic.SceneConfig(height=size, width=size, num_frames=1, min_objects=3,
                                 max_objects=5)
  record = next(synthetic.generate_records(seed, 1, config))
  return editing.scene_from_video_record(record, 0, resolution=bundle.resolution)


# ------------------------------------------------------------------------------------------------
# The page.


def build_app(editor: Editor, title: str = "Neural Assets scene editor"):
  """The Gradio Blocks of the editor (not launched)."""

  names = list(editor.scenes)
  initial = editor.start(names[0])
  cfg = editor.bundle.config.sampler

  def view(session: Session):
    """Everything that follows a geometric change: state, wireframes, list, message, steps and
    the edited-scene download (which always holds the current edit)."""
    return (session, editor.wireframes(session),
            gr.update(choices=object_choices(session.edit), value=session.selected),
            session.message, _steps_text(session.edit), editor.save_edit(session))

  with gr.Blocks(title=title) as app:
    state = gr.State(initial)
    gr.Markdown(f"## {title}\nCheckpoint step {editor.bundle.step}, "
                f"{editor.bundle.resolution[0]}x{editor.bundle.resolution[1]} renders, "
                f"{editor.bundle.max_objects} object slots. Click an object in the frame to "
                "select it; boxes follow each edit at once, **Render** runs the model.")
    with gr.Row():
      scene_box = gr.Dropdown(choices=names, value=names[0], label="Scene", elem_id="scene")
      object_box = gr.Dropdown(choices=object_choices(initial.edit), value=initial.selected,
                               label="Selected object", elem_id="object")
      force_box = gr.Checkbox(value=False, label="Apply even if invalid", elem_id="force")
    with gr.Row():
      frame_view = gr.Image(value=editor.wireframes(initial), type="numpy", format="png",
                            interactive=False, label="Source frame with the edited 3D boxes "
                            "(click to select)", elem_id="wireframes")
      render_view = gr.Image(value=None, type="numpy", format="png", interactive=False,
                             label="Rendered edit", elem_id="render")
    message = gr.Markdown(initial.message, elem_id="message")
    steps_text = gr.Textbox(_steps_text(initial.edit), label="Edits so far", interactive=False,
                            lines=2, elem_id="steps")
    with gr.Row():
      render_btn = gr.Button("Render", variant="primary", elem_id="render_btn")
      num_steps = gr.Slider(1, 200, value=int(cfg.num_inference_steps), step=1,
                            label="Sampling steps", elem_id="num_steps")
      guidance = gr.Number(value=float(cfg.guidance_scale), label="Guidance scale",
                           elem_id="guidance")
      seed = gr.Number(value=0, precision=0, label="Seed", elem_id="seed")
    with gr.Row():
      undo_btn = gr.Button("Undo", elem_id="undo")
      reset_btn = gr.Button("Reset", elem_id="reset")
      png_btn = gr.DownloadButton("Download render (PNG)", value=None, elem_id="download_png")
      npz_btn = gr.DownloadButton("Download edited scene (.npz)",
                                  value=editor.save_edit(initial), elem_id="download_npz")

    with gr.Row():
      motion_spec = gr.Textbox(DEFAULT_MOTION, label="Motion: an op with paths A:B:N (N frames "
                               "from A to B) or waypoints W0,W1,...:N, on top of the edit",
                               elem_id="motion_spec", scale=3)
      fps = gr.Number(value=trajectory_lib.DEFAULT_FPS, label="Frames per second",
                      elem_id="fps")
      shared_noise = gr.Checkbox(value=True, label="Same initial noise for every frame",
                                 elem_id="shared_noise")
      motion_btn = gr.Button("Render motion", elem_id="motion_btn")
    with gr.Row():
      motion_view = gr.Video(value=None, format="mp4", autoplay=True, loop=True,
                             interactive=False, label="Rendered motion", elem_id="motion")
      gif_btn = gr.DownloadButton("Download motion (GIF)", value=None, elem_id="download_gif")

    with gr.Tab("Object"):
      with gr.Row():
        dx = gr.Number(value=0.0, label="x", elem_id="move_x")
        dy = gr.Number(value=0.0, label="y", elem_id="move_y")
        dz = gr.Number(value=0.0, label="z", elem_id="move_z")
        frame = gr.Radio(list(editing.FRAMES), value="camera", label="Frame (camera: x right, "
                         "y down, z forward)", elem_id="frame")
        move_btn = gr.Button("Move", elem_id="move")
      with gr.Row():
        yaw = gr.Number(value=0.0, label="yaw (deg)", elem_id="yaw")
        pitch = gr.Number(value=0.0, label="pitch (deg)", elem_id="pitch")
        roll = gr.Number(value=0.0, label="roll (deg)", elem_id="roll")
        rotate_btn = gr.Button("Rotate", elem_id="rotate")
      with gr.Row():
        factor = gr.Number(value=1.2, label="Scale factor", elem_id="factor")
        rescale_btn = gr.Button("Rescale", elem_id="rescale")
        remove_btn = gr.Button("Remove", elem_id="remove")
        duplicate_btn = gr.Button("Duplicate (moved by x, y, z)", elem_id="duplicate")
    with gr.Tab("Other scene"):
      with gr.Row():
        donor_box = gr.Dropdown(choices=names, value=names[-1], label="Other scene",
                                elem_id="donor")
        donor_object = gr.Number(value=0, precision=0, label="Its object", elem_id="donor_object")
        insert_btn = gr.Button("Insert its object", elem_id="insert")
        background_btn = gr.Button("Use its background", elem_id="background")
      donor_view = gr.Image(value=_donor_picture(editor, names[-1]), type="numpy", format="png",
                            interactive=False, label="Other scene", elem_id="donor_view")
    with gr.Tab("Camera"):
      with gr.Row():
        cx = gr.Number(value=0.0, label="x (right)", elem_id="cam_x")
        cy = gr.Number(value=0.0, label="y (down)", elem_id="cam_y")
        cz = gr.Number(value=0.0, label="z (forward)", elem_id="cam_z")
        cyaw = gr.Number(value=0.0, label="pan (deg)", elem_id="cam_yaw")
        cpitch = gr.Number(value=0.0, label="tilt (deg)", elem_id="cam_pitch")
        croll = gr.Number(value=0.0, label="roll (deg)", elem_id="cam_roll")
        camera_btn = gr.Button("Move camera", elem_id="camera")
      with gr.Row():
        orbit = gr.Number(value=10.0, label="Orbit (deg, about the objects' centre)",
                          elem_id="orbit")
        orbit_btn = gr.Button("Orbit camera", elem_id="orbit_btn")

    outputs = [state, frame_view, object_box, message, steps_text, npz_btn]

    def on_scene(name):
      return view(editor.start(name)) + (None,)

    scene_box.change(on_scene, scene_box, outputs + [render_view])
    object_box.input(lambda s, k: view(editor.select(s, None if k is None else int(k))),
                     [state, object_box], outputs)

    def on_click(s: Session, evt: gr.SelectData):
      height, width = editor.wireframes(s).shape[:2]
      x, y = evt.index
      return view(editor.click(s, float(x), float(y), width, height))

    frame_view.select(on_click, state, outputs)

    def action(make_op, needs_object=True):
      """A handler applying `make_op(session, *values) -> (Edit -> Edit)`."""
      def handler(s, force, *values):
        def op(edit):
          return make_op(s, bool(force), *values)(edit)
        return view(editor.apply(s, op, needs_object))
      return handler

    def bind(button, make_op, inputs, needs_object=True):
      button.click(action(make_op, needs_object), [state, force_box] + inputs, outputs)

    def num(v):
      return float(v or 0.0)

    bind(move_btn, lambda s, f, x, y, z, fr: lambda e: editing.translate(
        e, s.selected, (num(x), num(y), num(z)), fr, allow_invalid=f), [dx, dy, dz, frame])
    bind(rotate_btn, lambda s, f, a, b, c: lambda e: editing.rotate(
        e, s.selected, num(a), num(b), num(c), allow_invalid=f), [yaw, pitch, roll])
    bind(rescale_btn, lambda s, f, k: lambda e: editing.rescale(
        e, s.selected, num(k), allow_invalid=f), [factor])
    bind(remove_btn, lambda s, f: lambda e: editing.remove(e, s.selected), [])
    bind(duplicate_btn, lambda s, f, x, y, z, fr: lambda e: editing.duplicate(
        e, s.selected, (num(x), num(y), num(z)), fr, allow_invalid=f), [dx, dy, dz, frame])
    # The inserted object keeps its place in the frame (same pose relative to the camera as in
    # its scene) and is selected, ready to be moved.
    bind(insert_btn, lambda s, f, d, j: lambda e: editing.insert(
        e, editor.donor(d), int(j or 0), allow_invalid=f), [donor_box, donor_object],
         needs_object=False)
    bind(background_btn, lambda s, f, d: lambda e: editing.replace_background(
        e, editor.donor(d)), [donor_box], needs_object=False)
    bind(camera_btn, lambda s, f, x, y, z, a, b, c: lambda e: editing.move_camera(
        e, (num(x), num(y), num(z)), num(a), num(b), num(c), allow_invalid=f),
         [cx, cy, cz, cyaw, cpitch, croll], needs_object=False)
    bind(orbit_btn, lambda s, f, d: lambda e: editing.orbit_camera(e, num(d), allow_invalid=f),
         [orbit], needs_object=False)
    donor_box.change(lambda d: _donor_picture(editor, d), donor_box, donor_view)

    undo_btn.click(lambda s: view(editor.undo(s)), state, outputs)
    reset_btn.click(lambda s: view(editor.reset(s)) + (None,), state, outputs + [render_view])

    def on_render(s: Session, steps, scale, seed_value, progress=gr.Progress()):
      try:
        image, path = editor.render(s, int(steps or 1), float(scale if scale is not None else
                                                               float("nan")),
                                    int(seed_value or 0), lambda f, d: progress(f, desc=d))
      except editing.EditError as e:
        return (gr.update(), gr.update(), f"**Not rendered.** {e}")
      shown = draw.upscaled(image, DISPLAY_WIDTH)
      return (shown, gr.update(value=path), f"Rendered: {s.edit.name} ({int(steps)} steps, "
              f"guidance {float(scale):g}, seed {int(seed_value or 0)}).")

    render_btn.click(on_render, [state, num_steps, guidance, seed],
                     [render_view, png_btn, message], show_progress="full")

    def on_motion(s: Session, spec, steps, scale, seed_value, rate, shared, donor,
                  progress=gr.Progress()):
      try:
        frames, mp4, gif = editor.render_motion(
            s, str(spec or ""), int(steps or 1),
            float(scale if scale is not None else float("nan")), int(seed_value or 0),
            float(rate if rate is not None else float("nan")), bool(shared),
            lambda f, d: progress(f, desc=d), donor)
      except (editing.EditError, trajectory_lib.TrajectoryError) as e:
        return (gr.update(), gr.update(), f"**Motion not rendered.** {e}")
      noise = "shared" if shared else "per-frame"
      return (mp4, gr.update(value=gif), f"Rendered motion: {spec} ({len(frames)} frames at "
              f"{float(rate):g} fps, {int(steps)} steps, seed {int(seed_value or 0)}, {noise} "
              "noise).")

    motion_btn.click(on_motion, [state, motion_spec, num_steps, guidance, seed, fps,
                                 shared_noise, donor_box], [motion_view, gif_btn, message],
                     show_progress="full")
  return app


def _donor_picture(editor: Editor, name: str) -> np.ndarray:
  edit = editor.scenes[name]
  return draw.draw_wireframes(edit.source.image, editing.as_edit(edit.source), None,
                              DISPLAY_WIDTH // 2)


def _steps_text(edit: editing.Edit) -> str:
  return "\n".join(f"{k + 1}. {s}" for k, s in enumerate(edit.steps)) or "(none)"


# ------------------------------------------------------------------------------------------------
# Command line.


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="python -m neural_assets.app",
                                   description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  inference.add_checkpoint_arguments(parser, default_checkpoint=DEFAULT_WORKDIR)
  parser.add_argument("--scenes", default=None,
                      help="Directory of scene / edited-scene .npz files (default: "
                      "<checkpoint>/scenes when it exists, else synthetic scenes).")
  parser.add_argument("--port", type=int, default=7860, help="Port on 127.0.0.1.")
  parser.add_argument("--no_warmup", action="store_true",
                      help="Do not compile the sampler in the background at start.")
  parser.add_argument("--share", action="store_true",
                      help="Also open a public gradio.live link (off unless asked).")
  return parser


def make_editor(checkpoint: str, scenes: str | None = None, config: str | None = None,
                step: int | None = None, use_ema: bool = True) -> Editor:
  """Loads the model (`neural_assets.inference`) and the scenes."""
  bundle = inference.load_model_for_inference(checkpoint, config, step, use_ema=use_ema)
  if scenes is None:
    default = os.path.join(checkpoint, "scenes")
    scenes = default if os.path.isdir(default) else None
  return Editor(bundle, load_scenes(scenes, bundle))


def launch(editor: Editor, port: int | None = None, share: bool = False, **kwargs):
  """Serves the app on 127.0.0.1 (`port`; None: the first free one from 7860). Returns
  (app, local URL, share URL). Pass prevent_thread_lock=True to return at once (notebooks,
  tests) and `app.close()` to stop."""
  app = build_app(editor)
  _, local_url, share_url = app.launch(server_name="127.0.0.1", server_port=port, share=share,
                                       allowed_paths=[editor.out_dir], **kwargs)
  return app, local_url, share_url


def main(argv: Sequence[str] | None = None) -> int:
  parser = _parser()
  args = parser.parse_args(argv)
  if not 1 <= args.port <= 65535:
    parser.error(f"--port must be in 1..65535, got {args.port}.")
  try:
    editor = make_editor(args.checkpoint, args.scenes, args.config, args.step, not args.no_ema)
  except FileNotFoundError as e:
    parser.error(f"{e}\nTrain one first (bash demo.sh) or pass --checkpoint.")
  print(f"Scenes: {', '.join(editor.scenes)}; files written to {editor.out_dir}")
  if not args.no_warmup:
    # The first render compiles the sampler (a minute on a CPU, benchmarks/editor.py); do it
    # while the user looks at the page.
    threading.Thread(target=editor.warm_up, daemon=True).start()
  launch(editor, args.port, args.share)
  return 0


if __name__ == "__main__":
  sys.exit(main())
