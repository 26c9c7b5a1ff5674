"""Evaluation metrics of the paper (PSNR, SSIM, LPIPS, FID, DINO similarity), image and object level.

Modules: image_metrics (PSNR, SSIM), object_regions (object-level protocol: box crops),
fid (streaming statistics, Frechet distance), inception (FID Inception-v3), lpips (LPIPS
alex / vgg), dino_similarity (DINO feature cosine similarity), evaluator (`Evaluator`, the API
the training loop calls, and `default_config`).
"""
from neural_assets.evaluation.evaluator import Evaluator
from neural_assets.evaluation.evaluator import default_config

__all__ = ["Evaluator", "default_config"]
