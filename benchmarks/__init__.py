"""Benchmarks of the training step, memory, data pipeline, editor, edit fidelity and ablations.

Run from the repository root as `python -m benchmarks.<name>` (each module's docstring has its
flags); with the package installed (`pip install -e .`), `python benchmarks/<name>.py` works too.
Results go to `benchmarks/results/`.
"""
