"""The peers: one module per library or loop, all with the same four functions.

Each peer module exposes:

- ``prepare_targets(spec, y)``: the label encoding a user of that library would do
  (one-hot for Keras's ``categorical_crossentropy``); not timed.
- ``build(spec, n_features)``: a freshly initialised, compiled model; not timed.
- ``fit(model, spec, X, y)``: trains it as the workload says; this is the timed fit.
- ``predict(model, X)``: class probabilities of shape (n, n_classes) or predictions of
  shape (n, 1) / (n,), through the library's normal prediction call.
- ``build_and_fit(spec, X, y)``: ``build`` then ``fit``, for use outside the harness.

Modules are imported by name inside the worker process, so a peer whose library is missing
fails alone and is reported as ``error: <message>``.
"""

# Display order: trainwell first, then the other Keras-style peers, then scikit-learn, then torch loops.
PEERS: dict[str, str] = {
    "trainwell": "bench.peers.trainwell_peer",
    "keras_torch": "bench.peers.keras_torch",
    "keras_jax": "bench.peers.keras_jax",
    "sklearn": "bench.peers.sklearn_mlp",
    "torch_dataloader": "bench.peers.torch_dataloader",
    "torch_lean": "bench.peers.torch_lean",
}
