"""Save and restore what a probe run changes: weights, optimizer state, counters, random state.

``model.diagnose`` trains for a few epochs and ``model.find_learning_rate`` for a few steps; both
must leave the model exactly as they found it.
"""

from __future__ import annotations

import copy

import torch


def capture(model) -> dict:
    """A copy of everything a short training run may change.

    Returns:
        A dict for ``restore``: parameters and buffers, the optimizer's state, ``iterations`` and
        config, ``epochs_trained``, ``history``, ``stop_training`` and torch's CPU random state.
    """
    opt = model.optimizer
    built = opt is not None and getattr(opt, "built", False)
    return {
        "weights": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "optimizer": opt,
        "optimizer_built": built,
        "optimizer_state": copy.deepcopy(opt.torch_optimizer.state_dict()) if built else None,
        "iterations": getattr(opt, "iterations", 0),
        "optimizer_config": opt.get_config() if opt is not None else None,
        "epochs_trained": getattr(model, "epochs_trained", 0),
        "history": getattr(model, "history", None),
        "stop_training": getattr(model, "stop_training", False),
        "rng": torch.get_rng_state(),
        "training": model.training,
    }


def restore(model, saved: dict) -> None:
    """Put back what ``capture`` saved (weights are copied in place, so the optimizer keeps its params)."""
    with torch.no_grad():
        model.load_state_dict(saved["weights"])
    opt = saved["optimizer"]
    if opt is not None:
        if saved["optimizer_built"]:
            opt.torch_optimizer.load_state_dict(saved["optimizer_state"])
        elif getattr(opt, "built", False):
            # It was built by the probe run: hand back a fresh, unbuilt one with the same settings.
            opt = type(opt).from_config(saved["optimizer_config"])
        opt.iterations = saved["iterations"]
        lr = saved["optimizer_config"].get("learning_rate")
        if isinstance(lr, (int, float)):
            opt.learning_rate = lr
    model.optimizer = opt
    model.epochs_trained = saved["epochs_trained"]
    model.history = saved["history"]
    model.stop_training = saved["stop_training"]
    torch.set_rng_state(saved["rng"])
    model.train(saved["training"])
