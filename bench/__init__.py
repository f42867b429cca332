"""Benchmark suite: trainwell side by side with Keras, scikit-learn and hand-written PyTorch loops.

Run it from the repository root with ``python -m bench`` (see bench/README.md).
"""
