"""Asset tokenizer (appearance / pose / background tokens, CFG dropout) and the full model's loss."""
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import traverse_util

from configs import conditioning as conditioning_config
from configs import sd21
from neural_assets.diffusion.schedule import NoiseSchedule
from neural_assets.models import conditioning
from neural_assets.models.asset_diffusion import NeuralAssetsModel, diffusion_loss
from neural_assets.models.unet import UNet2DConditionModel

B, N, H, W = 3, 3, 40, 48
CONTEXT = 32


def _tiny_config(max_objects=N):
  c = conditioning_config.get_config("vits8", max_objects=max_objects)
  c.encoder.update(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                   intermediate_size=64, patch_size=8, image_size=32, input_size=32)
  c.update(token_dim=CONTEXT // 2, context_dim=CONTEXT, pose_hidden_dim=24)
  return c


def _rotation(angle):
  c, s = np.cos(angle), np.sin(angle)
  return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], np.float32)


def _batch(seed=0):
  rng = np.random.default_rng(seed)
  corners = rng.uniform(0.05, 0.95, size=(B, N, 2, 2))
  boxes = np.concatenate([corners.min(2), corners.max(2)], -1).astype(np.float32)
  slot_mask = np.array([[True, False, True], [True, True, True], [False, False, True]])
  boxes[~slot_mask] = 0.0
  target_corners = rng.uniform(0, 1, size=(B, N, 8, 3)).astype(np.float32)
  target_corners[~slot_mask] = 0.0
  pose = np.tile(np.eye(4, dtype=np.float32), (B, 1, 1))
  for b in range(B):
    pose[b, :3, :3] = _rotation(0.3 * (b + 1))
    pose[b, :3, 3] = rng.normal(size=3)
  return dict(
      source_image=jnp.asarray(rng.uniform(size=(B, H, W, 3)), jnp.float32),
      source_boxes=jnp.asarray(boxes), target_corners=jnp.asarray(target_corners),
      slot_mask=jnp.asarray(slot_mask), relative_pose=jnp.asarray(pose))


@pytest.fixture(scope="module")
def tokenizer_and_params():
  tok = conditioning.AssetTokenizer(_tiny_config())
  # jit everywhere: eager flax dispatch compiles each op separately, far slower on a busy CPU.
  params = jax.jit(tok.init)(jax.random.key(0), _batch(), jnp.zeros((B,), bool))["params"]
  return tok, params


_APPLY = {}


def _tokens(tok, params, batch, drop=None):
  drop = jnp.zeros((B,), bool) if drop is None else drop
  apply = _APPLY.setdefault(id(tok), jax.jit(tok.apply))
  tokens, mask = apply({"params": params}, batch, drop)
  return np.asarray(tokens), np.asarray(mask)


def _slot(tokens, s):
  return tokens[:, 4 * s:4 * (s + 1)]


def test_paper_config_shapes():
  c = conditioning_config.get_config()
  tok = conditioning.AssetTokenizer(c)
  batch = jax.tree.map(lambda x: jax.ShapeDtypeStruct((2,) + x.shape[1:], x.dtype),
                       dict(_batch(), source_boxes=jnp.zeros((B, 23, 4)),
                            target_corners=jnp.zeros((B, 23, 8, 3)),
                            slot_mask=jnp.zeros((B, 23), bool),
                            source_image=jnp.zeros((B, 256, 256, 3))))
  drop = jax.ShapeDtypeStruct((2,), jnp.bool_)
  variables = jax.eval_shape(tok.init, jax.random.key(0), batch, drop)
  tokens, mask = jax.eval_shape(tok.apply, variables, batch, drop)
  assert tokens.shape == (2, 96, 1024) and mask.shape == (2, 96)
  flat = {"/".join(k): v.shape for k, v in
          traverse_util.flatten_dict(variables["params"]).items()}
  assert flat["encoder/embeddings/patch_embeddings/kernel"] == (8, 8, 3, 768)
  assert flat["encoder/embeddings/position_embeddings"] == (1, 1 + 28 * 28, 768)
  assert flat["appearance_encoder/projection/kernel"] == (768, 512)
  assert flat["pose_encoder/hidden/kernel"] == (12, 1024)
  assert flat["pose_encoder/out/kernel"] == (1024, 512)
  assert flat["background_encoder/camera_mlp_hidden/kernel"] == (12, 24)
  assert flat["background_encoder/camera_mlp_out/kernel"] == (24, 12)
  assert flat["asset_projection/kernel"] == (1024, 1024)
  # The appearance and pose modules are shared with the background: no copies under it.
  assert {k for k in flat if k.startswith("background_encoder/")} == {
      f"background_encoder/camera_mlp_{a}/{b}" for a in ("hidden", "out")
      for b in ("kernel", "bias")}


def test_tiny_shapes_padding_and_mask(tokenizer_and_params):
  tok, params = tokenizer_and_params
  batch = _batch()
  tokens, mask = _tokens(tok, params, batch)
  assert tokens.shape == (B, (N + 1) * 4, CONTEXT) and mask.shape == (B, (N + 1) * 4)
  slot_mask = np.asarray(batch["slot_mask"])
  for b in range(B):
    for s in range(N + 1):
      valid = s == N or slot_mask[b, s]
      assert np.all(mask[b, 4 * s:4 * (s + 1)] == valid)
      block = tokens[b, 4 * s:4 * (s + 1)]
      if valid:
        assert np.abs(block).min(axis=-1).max() > 0 and np.all(np.abs(block).sum(-1) > 0)
      else:
        assert np.all(block == 0.0)


def _randomised(params, seed=7):
  """Every parameter (biases included, which start at zero) perturbed: f(0) != 0."""
  leaves, treedef = jax.tree_util.tree_flatten(params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return jax.tree_util.tree_unflatten(treedef, [
      x + 0.1 * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)])


def _tokenizer(**overrides):
  config = _tiny_config()
  config.update(overrides)
  tok = conditioning.AssetTokenizer(config)
  params = jax.jit(tok.init)(jax.random.key(0), _batch(), jnp.zeros((B,), bool))["params"]
  return tok, _randomised(params)


def test_cfg_zeros_null_condition_is_all_zero():
  tok, params = _tokenizer(null_condition="zeros")
  batch = _batch()
  full, _ = _tokens(tok, params, batch)
  tokens, mask = _tokens(tok, params, batch, jnp.array([False, True, False]))
  assert np.all(tokens[1] == 0.0) and not mask[1].any()
  np.testing.assert_allclose(tokens[[0, 2]], full[[0, 2]], rtol=1e-5, atol=1e-6)


def test_cfg_learned_null_condition_is_f_of_zero():
  """Release: a dropped example's boxes and poses are zeros through the encoders; its context is
  a learned constant per slot kind (not zero, not depending on the example), the same f(0) at
  every foreground slot, padded ones included: the null context does not tell the count."""
  tok, params = _tokenizer(null_condition="learned")
  batch, other = _batch(), _batch(seed=3)
  full, _ = _tokens(tok, params, batch)
  drop = jnp.array([False, True, False])
  tokens, mask = _tokens(tok, params, batch, drop)
  np.testing.assert_allclose(tokens[[0, 2]], full[[0, 2]], rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(mask[1], True)  # example 1 has every slot
  null_object = _slot(tokens, 0)[1]
  assert np.abs(null_object).min() > 0 and np.abs(null_object - _slot(full, 0)[1]).max() > 1e-3
  for s in range(1, N):
    np.testing.assert_allclose(_slot(tokens, s)[1], null_object, rtol=1e-6, atol=1e-7)
  assert np.abs(_slot(tokens, N)[1] - null_object).max() > 1e-4  # the background's own f(0)
  # Another image, boxes and poses: the same null context.
  other_tokens, _ = _tokens(tok, params, dict(other, slot_mask=batch["slot_mask"]), drop)
  np.testing.assert_allclose(other_tokens[1], tokens[1], rtol=1e-5, atol=1e-6)
  # Padded slots of a dropped example hold the same f(0), marked valid: every example's null
  # context is the same, whatever its object count (examples 0 and 2 have padded slots).
  all_dropped, all_mask = _tokens(tok, params, batch, jnp.ones((B,), bool))
  assert np.asarray(all_mask).all()
  for b in range(B):
    np.testing.assert_allclose(all_dropped[b], tokens[1], rtol=1e-5, atol=1e-6)
  # Kept examples' padded slots stay exactly zero and masked.
  assert np.all(_slot(full, 1)[0] == 0.0) and not np.asarray(_tokens(tok, params, batch)[1])[0, 4:8].any()


def test_null_condition_is_validated():
  tok, params = _tokenizer()
  tok_bad = conditioning.AssetTokenizer(_tiny_config().copy_and_resolve_references())
  tok_bad.config.null_condition = "none"
  with pytest.raises(ValueError, match="null_condition"):
    tok_bad.apply({"params": params}, _batch(), jnp.zeros((B,), bool))
  # A config without the key is an error, never a silent default.
  for key in ("null_condition", "shuffle_pose", "background_token", "pose_fourier_bands"):
    config = _tiny_config()
    del config[key]
    with pytest.raises(AttributeError, match=key):
      conditioning.AssetTokenizer(config).init(jax.random.key(0), _batch(), jnp.zeros((B,), bool))


@pytest.mark.parametrize("prob", [0.0, 0.1, 0.5, 1.0])
def test_drop_rate_statistics(prob):
  n = 200_000
  drops = np.asarray(conditioning.sample_drop_cond(jax.random.key(3), n, prob))
  assert drops.dtype == bool and drops.shape == (n,)
  assert abs(drops.mean() - prob) < 5 * np.sqrt(prob * (1 - prob) / n) + 1e-12
  with pytest.raises(ValueError, match="drop_prob"):
    conditioning.sample_drop_cond(jax.random.key(3), 4, 1.5)


def test_background_token_uses_relative_pose(tokenizer_and_params):
  tok, params = tokenizer_and_params
  batch = _batch()
  base, _ = _tokens(tok, params, batch)
  pose = np.array(batch["relative_pose"])
  pose[0, :3, :3] = _rotation(-1.1)
  pose[0, :3, 3] += 0.5
  moved, _ = _tokens(tok, params, dict(batch, relative_pose=jnp.asarray(pose)))
  assert np.abs(_slot(moved, N)[0] - _slot(base, N)[0]).max() > 1e-4
  np.testing.assert_allclose(moved[0, :4 * N], base[0, :4 * N], rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(moved[1:], base[1:], rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(
      np.asarray(conditioning.relative_pose_features(jnp.asarray(pose)))[0],
      np.concatenate([pose[0, :3, :3].reshape(-1), pose[0, :3, 3]]), rtol=1e-6)


def test_pose_tokens_follow_target_corners(tokenizer_and_params):
  tok, params = tokenizer_and_params
  batch = _batch()
  base, _ = _tokens(tok, params, batch)
  corners = np.array(batch["target_corners"])
  corners[1, 2, 0] += 0.1  # corner p0 is used
  moved, _ = _tokens(tok, params, dict(batch, target_corners=jnp.asarray(corners)))
  changed = np.abs(moved - base).max(axis=-1) > 1e-6
  expected = np.zeros_like(changed)
  expected[1, 8:12] = True
  np.testing.assert_array_equal(changed, expected)
  corners[1, 2, 7] += 5.0  # corner p7 is not one of (0, 1, 2, 4)
  unused, _ = _tokens(tok, params, dict(batch, target_corners=jnp.asarray(corners)))
  np.testing.assert_allclose(unused, moved, rtol=1e-6, atol=1e-7)


def test_object_and_background_images(tokenizer_and_params):
  """Object tokens ignore pixels outside the boxes; the background ignores pixels inside."""
  tok, params = tokenizer_and_params
  batch = _batch()
  base, _ = _tokens(tok, params, batch)
  union = np.asarray(conditioning.boxes_union_mask(batch["source_boxes"], batch["slot_mask"],
                                                   H, W))
  assert 0 < union.mean() < 1
  noise = np.random.default_rng(5).uniform(size=(B, H, W, 3)).astype(np.float32)
  image = np.asarray(batch["source_image"])
  outside, _ = _tokens(tok, params, dict(
      batch, source_image=jnp.asarray(np.where(union[..., None], image, noise))))
  inside, _ = _tokens(tok, params, dict(
      batch, source_image=jnp.asarray(np.where(union[..., None], noise, image))))
  fg = slice(0, 4 * N)
  np.testing.assert_allclose(outside[:, fg], base[:, fg], rtol=1e-5, atol=1e-6)
  assert np.abs(outside[:, 4 * N:] - base[:, 4 * N:]).max() > 1e-4
  np.testing.assert_allclose(inside[:, 4 * N:], base[:, 4 * N:], rtol=1e-5, atol=1e-6)
  assert np.abs(inside[:, fg] - base[:, fg]).max() > 1e-4


def test_uint8_image_equals_float(tokenizer_and_params):
  tok, params = tokenizer_and_params
  batch = _batch()
  u8 = np.round(np.asarray(batch["source_image"]) * 255).astype(np.uint8)
  a, _ = _tokens(tok, params, dict(batch, source_image=jnp.asarray(u8)))
  b, _ = _tokens(tok, params, dict(batch, source_image=jnp.asarray(u8 / 255.0, jnp.float32)))
  np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_inserted_object_has_pose_but_no_appearance(tokenizer_and_params):
  tok, params = tokenizer_and_params
  batch = _batch()
  appearance_mask = np.array(batch["slot_mask"])
  appearance_mask[1, 0] = False
  batch = dict(batch, appearance_mask=jnp.asarray(appearance_mask))
  base, mask = _tokens(tok, params, batch)
  assert mask[1, 0] and np.abs(base[1, :4]).sum() > 0
  boxes = np.array(batch["source_boxes"])
  boxes[1, 0] = [0.0, 0.0, 1.0, 1.0]
  moved, _ = _tokens(tok, params, dict(batch, source_boxes=jnp.asarray(boxes)))
  np.testing.assert_allclose(moved[1, :4], base[1, :4], rtol=1e-6, atol=1e-7)


def test_zero_source_box_has_exactly_zero_appearance():
  """A slot with a zero (empty) source box and no `appearance_mask` key: RoIAlign would clamp
  the box to the top-left feature cell and read it; its appearance must be exactly zero, the
  same token as with appearance_mask False, whatever the image holds there."""
  tok, params = _tokenizer()
  batch = _batch()
  boxes = np.array(batch["source_boxes"])
  boxes[1, 0] = 0.0  # slotted, but its source box is empty
  batch = dict(batch, source_boxes=jnp.asarray(boxes))
  got, mask = _tokens(tok, params, batch)
  appearance_mask = np.array(batch["slot_mask"])
  appearance_mask[1, 0] = False
  expected, _ = _tokens(tok, params, dict(batch, appearance_mask=jnp.asarray(appearance_mask)))
  assert mask[1, 0]
  np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
  image = np.array(batch["source_image"])
  image[1, :8, :8] = 1.0 - image[1, :8, :8]  # the top-left corner RoIAlign would clamp to
  changed, _ = _tokens(tok, params, dict(batch, source_image=jnp.asarray(image)))
  np.testing.assert_allclose(_slot(changed, 0)[1], _slot(got, 0)[1], rtol=1e-6, atol=1e-7)


def test_background_mask_paints_unslotted_objects():
  """`background_mask` (the pipeline's union of every source-visible object's box) decides what
  the background image paints: pixels inside it do not reach the background token."""
  tok, params = _tokenizer()
  batch = _batch()
  mask = np.zeros((B, H, W), bool)
  mask[:, 5:20, 30:45] = True  # an unslotted object's box
  batch = dict(batch, background_mask=jnp.asarray(mask))
  base, _ = _tokens(tok, params, batch)
  image = np.array(batch["source_image"])
  image[:, 5:20, 30:45] = np.random.default_rng(1).uniform(size=(B, 15, 15, 3))
  moved, _ = _tokens(tok, params, dict(batch, source_image=jnp.asarray(image)))
  np.testing.assert_allclose(_slot(moved, N), _slot(base, N), rtol=1e-5, atol=1e-6)
  # Without the mask the same pixels leak into the background token.
  plain = {k: v for k, v in batch.items() if k != "background_mask"}
  leaked = _tokens(tok, params, dict(plain, source_image=jnp.asarray(image)))[0]
  assert np.abs(_slot(leaked, N) - _slot(_tokens(tok, params, plain)[0], N)).max() > 1e-4


def test_bad_inputs(tokenizer_and_params):
  tok, params = tokenizer_and_params
  batch = _batch()
  drop = jnp.zeros((B,), bool)
  with pytest.raises(KeyError, match="relative_pose"):
    tok.apply({"params": params}, {k: v for k, v in batch.items() if k != "relative_pose"}, drop)
  with pytest.raises(ValueError, match="max_objects"):
    tok.apply({"params": params}, dict(batch, slot_mask=batch["slot_mask"][:, :2]), drop)
  with pytest.raises(ValueError, match="drop_cond"):
    tok.apply({"params": params}, batch, jnp.zeros((B + 1,), bool))
  with pytest.raises(ValueError, match="source_image"):
    tok.apply({"params": params}, dict(batch, source_image=batch["source_image"].astype(jnp.int32)),
              drop)


def test_gradient_reaches_encoder(tokenizer_and_params):
  tok, params = tokenizer_and_params
  batch = _batch()

  def loss(p):
    tokens, _ = tok.apply({"params": p}, batch, jnp.zeros((B,), bool))
    return jnp.sum(jnp.sin(tokens))

  grads = jax.jit(jax.grad(loss))(params)
  for path, g in traverse_util.flatten_dict(grads).items():
    assert np.all(np.isfinite(np.asarray(g))), path
  enc = traverse_util.flatten_dict(grads["encoder"])
  assert all(np.abs(np.asarray(g)).sum() > 0 for g in enc.values())
  for name in ("camera_mlp_hidden", "camera_mlp_out"):
    assert np.abs(np.asarray(grads["background_encoder"][name]["kernel"])).sum() > 0


def _model_config(prediction_type="epsilon"):
  unet = dict(sd21.unet_config("base"))
  # Cross-attention only in the mid block: the tokens still reach the UNet, and the gradient
  # compile stays small on a CPU.
  unet.update(block_out_channels=(16, 32), down_block_types=("DownBlock2D", "DownBlock2D"),
              up_block_types=("UpBlock2D", "UpBlock2D"), layers_per_block=1,
              attention_head_dim=(2, 4), cross_attention_dim=CONTEXT, norm_num_groups=8,
              sample_size=8)
  diffusion = sd21.get_config("base").diffusion
  diffusion.prediction_type = prediction_type
  return ml_collections.ConfigDict(dict(conditioning=_tiny_config(), unet=unet,
                                        diffusion=diffusion, latent_coordinates=False,
                                        latent_coordinate_bands=0))


class _StandInModel(nn.Module):
  """Same call signature as NeuralAssetsModel, cheap to compile: checks the loss wiring."""

  @nn.compact
  def __call__(self, noisy_latents, timesteps, batch, drop_cond, train=False):
    scale = self.param("scale", nn.initializers.constant(0.7), ())
    cond = jnp.where(drop_cond, 0.0, jnp.sum(batch["target_corners"], axis=(1, 2, 3)))
    return (scale * noisy_latents + cond[:, None, None, None] / 100.0
            + timesteps[:, None, None, None] / 1000.0)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_diffusion_loss_math(prediction_type):
  schedule = NoiseSchedule.from_config(_model_config(prediction_type).diffusion)
  model = _StandInModel()
  batch = _batch()
  latents = jax.random.normal(jax.random.key(1), (B, 8, 8, 4))
  noise = jax.random.normal(jax.random.key(2), latents.shape)
  t = jnp.array([3, 500, 990])
  drop = jnp.array([False, True, False])
  params = {"scale": jnp.float32(0.7)}
  loss, metrics = diffusion_loss(params, model, batch, latents, jax.random.key(4), schedule,
                                 0.1, noise=noise, timesteps=t, drop_cond=drop)
  x_t = schedule.add_noise(latents, noise, t)
  out = model.apply({"params": params}, x_t, t, batch, drop)
  target = noise if prediction_type == "epsilon" else schedule.velocity(latents, noise, t)
  np.testing.assert_allclose(float(loss), float(jnp.mean((out - target) ** 2)), rtol=1e-6)
  np.testing.assert_allclose(float(metrics["cfg_drop_fraction"]), 1 / 3, rtol=1e-6)
  # Sampled noise / timesteps / dropout are deterministic in the key and respond to it.
  a = diffusion_loss(params, model, batch, latents, jax.random.key(4), schedule, 0.5)[0]
  b = diffusion_loss(params, model, batch, latents, jax.random.key(4), schedule, 0.5)[0]
  c = diffusion_loss(params, model, batch, latents, jax.random.key(5), schedule, 0.5)[0]
  assert float(a) == float(b) and float(a) != float(c)


def test_diffusion_loss_object_weight():
  """Pixels whose centre is inside a slotted target box weigh 1 + w; padding slots weigh 1."""
  schedule = NoiseSchedule.from_config(_model_config().diffusion)
  model = _StandInModel()
  batch = dict(_batch())
  # Latents 8 x 8: example 0 box rows 0-3, cols 2-7 (pixel centres (i + 0.5) / 8); example 1 a
  # box in a padding slot (must not count); example 2 two overlapping boxes (counted once).
  boxes = np.zeros((B, N, 4), np.float32)
  boxes[0, 0] = [0.0, 0.25, 0.5, 1.0]
  boxes[1, 0] = [0.0, 0.0, 1.0, 1.0]
  boxes[2, 0] = [0.5, 0.5, 1.0, 1.0]
  boxes[2, 1] = [0.5, 0.0, 1.0, 0.75]
  slot_mask = np.array([[True, False, False], [False, True, True], [True, True, False]])
  batch.update(target_boxes=jnp.asarray(boxes), slot_mask=jnp.asarray(slot_mask))
  inside = np.zeros((B, 8, 8), bool)
  inside[0, :4, 2:] = True
  inside[2, 4:, :] = True
  latents = jax.random.normal(jax.random.key(1), (B, 8, 8, 4))
  noise = jax.random.normal(jax.random.key(2), latents.shape)
  t = jnp.array([3, 500, 990])
  drop = jnp.array([False, False, True])
  params = {"scale": jnp.float32(0.7)}
  args = (params, model, batch, latents, jax.random.key(4), schedule, 0.1)
  kwargs = dict(noise=noise, timesteps=t, drop_cond=drop)
  weighted, _ = diffusion_loss(*args, object_weight=3.0, **kwargs)
  out = model.apply({"params": params}, schedule.add_noise(latents, noise, t), t, batch, drop)
  squared = np.asarray((out - noise) ** 2)
  want = np.mean(squared * (1.0 + 3.0 * inside)[..., None])
  np.testing.assert_allclose(float(weighted), want, rtol=1e-6)
  plain, _ = diffusion_loss(*args, **kwargs)
  np.testing.assert_allclose(float(plain), np.mean(squared), rtol=1e-6)
  assert float(weighted) > float(plain) * 1.1


def _random_params(shapes, key):
  """Random values for a parameter-shape tree, without compiling `init` (slow on CPU)."""
  flat = traverse_util.flatten_dict(shapes)
  keys = jax.random.split(key, len(flat))
  out = {}
  for k, (path, s) in zip(keys, sorted(flat.items())):
    noise = 0.1 * jax.random.normal(k, s.shape, s.dtype)
    out[path] = 1.0 + noise if path[-1] == "scale" else noise
  return traverse_util.unflatten_dict(out)


def test_gradients_reach_unet_and_encoder():
  config = _model_config()
  model = NeuralAssetsModel(config)
  schedule = NoiseSchedule.from_config(config.diffusion)
  batch = _batch()
  latents = jax.random.normal(jax.random.key(1), (B, 8, 8, 4))
  shapes = jax.eval_shape(model.init, jax.random.key(0), latents, jnp.zeros((B,), jnp.int32),
                          batch, jnp.zeros((B,), bool))["params"]
  assert set(shapes) == {"tokenizer", "unet"}
  assert "encoder" in shapes["tokenizer"] and "conv_in" in shapes["unet"]
  params = _random_params(shapes, jax.random.key(0))

  grad_fn = jax.jit(jax.value_and_grad(lambda p, d: diffusion_loss(
      p, model, batch, latents, jax.random.key(4), schedule, 0.1, drop_cond=d)[0]))
  loss, grads = grad_fn(params, jnp.array([False, True, False]))
  assert np.isfinite(float(loss))
  for part in ("unet", "tokenizer"):
    flat = traverse_util.flatten_dict(grads[part])
    assert all(np.all(np.isfinite(np.asarray(g))) for g in flat.values())
    assert sum(float(np.abs(np.asarray(g)).sum()) for g in flat.values()) > 0, part
  fc1 = grads["tokenizer"]["encoder"]["layer_0"]["mlp"]["fc1"]["kernel"]
  assert np.abs(np.asarray(fc1)).sum() > 0
  # All examples dropped (learned null condition, the default): no image reaches the tokens, so
  # the visual encoder gets exactly zero gradient, while the null context f(0) itself (pose MLPs,
  # projection) and the UNet learn.
  assert config.conditioning.null_condition == "learned"
  _, grads = grad_fn(params, jnp.ones((B,), bool))
  assert all(np.all(np.asarray(g) == 0) for g in jax.tree.leaves(grads["tokenizer"]["encoder"]))
  assert np.abs(np.asarray(grads["tokenizer"]["asset_projection"]["bias"])).sum() > 0
  assert np.abs(np.asarray(grads["tokenizer"]["pose_encoder"]["out"]["bias"])).sum() > 0
  assert any(np.abs(np.asarray(g)).sum() > 0 for g in jax.tree.leaves(grads["unet"]))


def test_model_rejects_mismatched_context_dim():
  config = _model_config()
  config.unet.cross_attention_dim = 64
  model = NeuralAssetsModel(config)
  with pytest.raises(ValueError, match="cross_attention_dim"):
    jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 8, 8, 4)),
                   jnp.zeros((1,), jnp.int32), jax.tree.map(lambda x: x[:1], _batch()),
                   jnp.zeros((1,), bool))


def test_pose_fourier_features_equal_the_numpy_definition():
  encoder = conditioning.PoseEncoder(token_dim=6, hidden_dim=10, num_tokens=2, fourier_bands=3)
  corners = jax.random.uniform(jax.random.key(0), (2, 3, 8, 3))
  params = encoder.init(jax.random.key(1), corners)["params"]
  assert params["hidden"]["kernel"].shape == (12 * (1 + 2 * 3), 10)
  out = np.asarray(encoder.apply({"params": params}, corners))
  x = np.asarray(corners)[:, :, [0, 1, 2, 4], :].reshape(2, 3, 12).astype(np.float64)
  angles = (x[..., None] * np.pi * 2.0 ** np.arange(3)).reshape(2, 3, 36)
  feats = np.concatenate([x, np.sin(angles), np.cos(angles)], axis=-1)
  hidden = feats @ np.asarray(params["hidden"]["kernel"]) + np.asarray(params["hidden"]["bias"])
  hidden = 0.5 * hidden * (1.0 + np.vectorize(math.erf)(hidden / np.sqrt(2.0)))
  token = hidden @ np.asarray(params["out"]["kernel"]) + np.asarray(params["out"]["bias"])
  np.testing.assert_allclose(out, np.repeat(token[:, :, None], 2, axis=2), atol=1e-5)
  # 0 bands: the release's MLP on the raw 12 coordinates.
  plain = conditioning.PoseEncoder(token_dim=6, hidden_dim=10)
  assert plain.init(jax.random.key(1), corners)["params"]["hidden"]["kernel"].shape == (12, 10)


def _coordinate_channels(bands):
  """The (y, x) grid in [-1, 1], then sin / cos of pi 2^k at pixel centres in [0, 1]: [8, 8, C]."""
  ly, lx = np.meshgrid(np.linspace(-1, 1, 8), np.linspace(-1, 1, 8), indexing="ij")
  cy, cx = np.meshgrid((np.arange(8) + 0.5) / 8, (np.arange(8) + 0.5) / 8, indexing="ij")
  channels = [ly, lx]
  for fn in (np.sin, np.cos):
    for c in (cy, cx):
      channels += [fn(np.pi * 2 ** k * c) for k in range(bands)]
  return np.stack(channels, -1)


@pytest.mark.parametrize("bands", [0, 2])
def test_latent_coordinates_join_the_unet_input(bands):
  """(y, x) and, with K bands, their Fourier features in the box corners' units (4 K more)."""
  config = _model_config()
  config.latent_coordinates = True
  config.latent_coordinate_bands = bands
  extra = 2 + 4 * bands
  with pytest.raises(ValueError, match=f"in_channels must be out_channels \\+ {extra}"):
    jax.eval_shape(NeuralAssetsModel(config).init, jax.random.key(0), jnp.zeros((B, 8, 8, 4)),
                   jnp.zeros((B,), jnp.int32), _batch(), jnp.zeros((B,), bool))
  config.unet.in_channels = 4 + extra
  model = NeuralAssetsModel(config)
  latents = jax.random.normal(jax.random.key(1), (B, 8, 8, 4))
  tokens = jax.random.normal(jax.random.key(2), (B, 4 * (N + 1), CONTEXT))
  t = jnp.array([10, 500, 900])
  params = jax.jit(model.init, static_argnames="method")(
      jax.random.key(0), latents, t, tokens, method=model.denoise)["params"]
  assert params["unet"]["conv_in"]["kernel"].shape[-2:] == (4 + extra, 16)
  out = model.apply({"params": params}, latents, t, tokens, method=model.denoise)
  grid = np.broadcast_to(_coordinate_channels(bands), (B, 8, 8, extra))
  unet = UNet2DConditionModel(**dict(config.unet))
  expected = unet.apply({"params": params["unet"]},
                        jnp.concatenate([latents, jnp.asarray(grid, jnp.float32)], -1), t, tokens)
  np.testing.assert_allclose(np.asarray(out), np.asarray(expected), atol=1e-5)
  assert out.shape == latents.shape


def test_latent_coordinate_bands_need_the_coordinates():
  config = _model_config()
  config.latent_coordinate_bands = 2
  config.unet.in_channels = 14
  latents, t = jnp.zeros((B, 8, 8, 4)), jnp.zeros((B,), jnp.int32)
  with pytest.raises(ValueError, match="needs model.latent_coordinates"):
    jax.eval_shape(NeuralAssetsModel(config).init, jax.random.key(0), latents, t, _batch(),
                   jnp.zeros((B,), bool))
