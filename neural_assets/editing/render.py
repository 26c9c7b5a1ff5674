"""Rendering edits with a trained model: token composition and DDIM sampling.

Rendering (`render`) builds one tokenizer batch with one example ("run") per scene that an edit
draws from: the run's source is that scene's image and 2D boxes, its target corners are the
edited 3D boxes projected with the target camera. Every object of the run's scene is kept in a
slot of the run (also removed ones), so the object / background images the tokenizer paints are
the ones it saw in training and a removed object does not leak into the background token. The
edit's tokens are then spliced slot by slot from the runs (tokens reshaped to [R, N+1, T, D]),
masked slots are zeroed (the padded-slot convention) and the last slot is the background scene's
background token. DDIM with classifier-free guidance and the frozen VAE decoder make the images;
variation v of every edit starts from the same noise (drawn from the seed and v only), so a grid
of edits compares like with like and does not depend on how many variations are asked for.
Models come from `neural_assets.inference.load_model_for_inference`.
"""
from __future__ import annotations

from typing import Sequence, Union

import einops
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from neural_assets import geometry
from neural_assets.editing.ops import Edit
from neural_assets.editing.ops import EditError
from neural_assets.editing.ops import as_edit
from neural_assets.editing.scene import Scene
from neural_assets.inference import ModelBundle


def _resized(image: np.ndarray, height: int, width: int) -> np.ndarray:
  if image.shape[:2] == (height, width):
    return image
  return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR))


def build_token_plan(edits: Sequence[Edit], max_objects: int
                     ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray]:
  """The tokenizer batch of all runs and, per edit and slot, where its tokens come from.

  Args:
    edits: E edits of the same source scene.
    max_objects: N, the model's foreground slots.

  Returns:
    batch: the tokenizer batch of R runs (`source_image` [R, H, W, 3] uint8, `source_boxes`
      [R, N, 4], `target_corners` [R, N, 8, 3], `slot_mask` [R, N], `relative_pose` [R, 4, 4]).
    run_index, slot_index: [E, N+1] int32: slot s of edit e takes run `run_index[e, s]`'s slot
      `slot_index[e, s]` (the last slot, the background, is a run's slot N).
    slot_valid: [E, N+1] bool: False for unused / removed / invalid slots (zero tokens).

  Raises:
    EditError: an edit has more active objects than N.
  """
  n = max_objects
  source = edits[0].source
  height, width = source.height, source.width
  runs = []  # dicts of one example each.
  run_index = np.zeros((len(edits), n + 1), np.int32)
  slot_index = np.zeros((len(edits), n + 1), np.int32)
  slot_valid = np.zeros((len(edits), n + 1), bool)

  def new_run(edit: Edit, scene_id: int, items: list[tuple[int, np.ndarray]]) -> int:
    """One example: `items` (source index, target corners) first, then the scene's other objects
    (zero corners) so that they are painted as in training, as far as the N slots allow."""
    scene = edit.scenes[scene_id]
    used = {index for index, _ in items}
    fill = [(i, np.zeros((8, 3), np.float32)) for i in range(scene.num_objects) if i not in used]
    slots = (items + fill)[:n]
    boxes = np.zeros((n, 4), np.float32)
    corners = np.zeros((n, 8, 3), np.float32)
    mask = np.zeros((n,), bool)
    for s, (index, uvd) in enumerate(slots):
      boxes[s], corners[s], mask[s] = scene.boxes_2d[index], uvd, True
    runs.append(dict(
        source_image=_resized(scene.image, height, width), source_boxes=boxes,
        target_corners=corners, slot_mask=mask,
        relative_pose=np.asarray(geometry.relative_pose(source.world_to_camera,
                                                        edit.world_to_camera), np.float32)))
    return len(runs) - 1

  for e, edit in enumerate(edits):
    if edit.source is not source:
      raise EditError(f"All edits rendered together must edit the same scene; edit {e} "
                      f"({edit.name!r}) edits another one.")
    active = np.flatnonzero(edit.active())
    if active.size > n:
      raise EditError(f"Edit {edit.name!r} has {active.size} objects but the model has only {n} "
                      "slots: remove some, or keep fewer objects with Scene.subset.")
    corners = edit.target_corners()
    by_scene: dict[int, list[tuple[int, int]]] = {}  # scene -> [(target slot, asset index)]
    for slot, a in enumerate(active):
      by_scene.setdefault(edit.assets[a].scene, []).append((slot, int(a)))
    first_run: dict[int, int] = {}
    for scene_id, members in sorted(by_scene.items()):
      for start in range(0, len(members), n):
        chunk = members[start:start + n]
        r = new_run(edit, scene_id, [(edit.assets[a].index, corners[a]) for _, a in chunk])
        first_run.setdefault(scene_id, r)
        for s, (slot, _) in enumerate(chunk):
          run_index[e, slot], slot_index[e, slot], slot_valid[e, slot] = r, s, True
    bg = edit.background_scene
    bg_run = first_run[bg] if bg in first_run else new_run(edit, bg, [])
    run_index[e, n], slot_index[e, n], slot_valid[e, n] = bg_run, n, True

  batch = {k: np.stack([r[k] for r in runs]) for k in runs[0]}
  return batch, run_index, slot_index, slot_valid


def compose_tokens(bundle: ModelBundle, edits: Sequence[Edit], null: bool = False) -> jax.Array:
  """[E, (N+1)*T, D] conditioning tokens of each edit, spliced from one tokenizer call; with
  `null`, the edit's unconditional context (its slots' tokens with every input dropped)."""
  batch, run_index, slot_index, slot_valid = build_token_plan(edits, bundle.max_objects)
  tokens = bundle.tokenize_fn(bundle.params, batch, null)  # [R, (N+1)*T, D]
  tokens = einops.rearrange(tokens, "r (s t) d -> r s t d", t=bundle.tokens_per_slot)
  spliced = tokens[jnp.asarray(run_index), jnp.asarray(slot_index)]  # [E, N+1, T, D]
  spliced = spliced * jnp.asarray(slot_valid, spliced.dtype)[..., None, None]
  return einops.rearrange(spliced, "e s t d -> e (s t) d")


def render(bundle: ModelBundle, scene: Scene, *edits: Union[Edit, Scene],
           guidance_scale: float | None = None, num_steps: int | None = None, seed: int = 0,
           num_variations: int = 1, eta: float | None = None) -> np.ndarray:
  """Renders edits of `scene` with DDIM + classifier-free guidance and the VAE decoder.

  Args:
    bundle: from `load_model_for_inference` (or `ModelBundle(config, params, vae_params)`).
    scene: the edited scene (the source image).
    *edits: Edits of `scene` (a Scene itself = its reconstruction); none: the reconstruction.
    guidance_scale, num_steps, eta: sampler overrides (default: `config.sampler`).
    seed: variation v of every edit starts from the same noise, drawn from
      `fold_in(split(PRNGKey(seed))[0], v)` (the other half feeds eta > 0 steps).
    num_variations: samples per edit.

  Returns:
    [E, V, H, W, 3] uint8 images at `config.data.resolution`.
  """
  if num_variations < 1:
    raise ValueError(f"num_variations must be >= 1, got {num_variations}.")
  edits = [as_edit(e) for e in (edits or (scene,))]
  for e, edit in enumerate(edits):
    if edit.source is not scene:
      raise EditError(f"Edit {e} ({edit.name!r}) was not made from the scene passed to render.")
  sampler = bundle.sampler(guidance_scale, num_steps, eta)
  cond = compose_tokens(bundle, edits)
  cond = einops.repeat(cond, "e l d -> (e v) l d", v=num_variations)
  uncond = einops.repeat(compose_tokens(bundle, edits, null=True), "e l d -> (e v) l d",
                         v=num_variations)
  batch = cond.shape[0]
  shape = bundle.latent_shape(batch)
  noise_key, step_key = jax.random.split(jax.random.PRNGKey(seed))
  noise = jnp.stack([jax.random.normal(jax.random.fold_in(noise_key, v), shape[1:], jnp.float32)
                     for v in range(num_variations)])
  noise = einops.repeat(noise, "v h w c -> (e v) h w c", e=len(edits))
  latents = sampler.sample(bundle.denoise_fn, bundle.params, cond, step_key, shape, uncond, noise)
  images = np.asarray(bundle.decode_fn(bundle.vae_params, latents))
  images = np.round(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)
  return einops.rearrange(images, "(e v) h w c -> e v h w c", v=num_variations)
