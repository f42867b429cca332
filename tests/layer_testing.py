"""``run_layer_test``: the checks every layer gets, one line per case (after Keras's ``run_layer_test``).

For a layer class, its constructor arguments and an input shape (batch axis included, as Keras
writes it; a list of shapes for merge layers) it checks:

1. the symbolic call (functional API) gives ``expected_output_shape``;
2. the numbers of trainable and non-trainable weights;
3. a forward pass on data gives that shape too;
4. ``get_config`` → ``from_config`` gives the same config, and the copy with the same weights
   gives the same outputs;
5. one training step in a model (``layer`` → Flatten when needed → Dense(1)) runs, gives a finite
   loss and moves every trainable weight of the layer;
6. ``model.save`` → ``load_model`` predicts the same numbers.
"""

from __future__ import annotations

import numpy as np
import torch

from trainwell import layers as layers_module
from trainwell.layers import Dense, Flatten, Input
from trainwell.models import Model, load_model
from trainwell.utils import set_random_seed


def _data(shape, integer_max, rng):
    shape = (8, *shape[1:])
    if integer_max is not None:
        return rng.integers(0, integer_max, size=shape).astype("float32")
    return rng.normal(size=shape).astype("float32")


def run_layer_test(layer_cls, init_kwargs: dict, input_shape, expected_output_shape,
                   expected_num_trainable_weights: int = 0, expected_num_non_trainable_weights: int = 0,
                   tmp_path=None, integer_max: int | None = None, supports_training: bool = True) -> None:
    """Build, call, count, serialize, train one step and save/load ``layer_cls(**init_kwargs)``."""
    set_random_seed(0)
    rng = np.random.default_rng(0)
    multi = isinstance(input_shape, list)
    shapes = input_shape if multi else [input_shape]
    inputs = [Input(shape=tuple(s[1:])) for s in shapes]
    layer = layer_cls(**init_kwargs)
    out = layer(inputs if multi else inputs[0])
    assert out.shape == tuple(expected_output_shape), f"symbolic output {out.shape}"
    assert len(layer.trainable_weights) == expected_num_trainable_weights
    assert len(layer.non_trainable_weights) == expected_num_non_trainable_weights

    arrays = [_data(s, integer_max, rng) for s in shapes]
    tensors = [torch.as_tensor(a) for a in arrays]
    layer.eval()
    with torch.no_grad():
        value = layer(tensors if multi else tensors[0])
    assert tuple(value.shape) == (8, *expected_output_shape[1:])

    config = layer.get_config()
    copy = layer_cls.from_config(config)
    assert copy.get_config() == config
    fresh = [Input(shape=tuple(s[1:])) for s in shapes]
    copy_out = copy(fresh if multi else fresh[0])
    assert copy_out.shape == out.shape
    copy.set_weights(layer.get_weights())
    copy.eval()
    with torch.no_grad():
        np.testing.assert_allclose(copy(tensors if multi else tensors[0]).numpy(), value.numpy(), rtol=1e-6)
    assert layers_module.deserialize(layers_module.serialize(layer)).get_config() == config

    head = Flatten()(out) if len(out.shape) > 2 else out
    model = Model(inputs if multi else inputs[0], Dense(1)(head))
    model.compile(optimizer="sgd", loss="mse")
    x = arrays if multi else arrays[0]
    y = rng.normal(size=(8, 1)).astype("float32")
    if supports_training:
        before = [w.detach().clone() for w in layer.trainable_weights]
        loss = model.train_on_batch(x, y)
        assert np.isfinite(loss)
        for w0, w1 in zip(before, layer.trainable_weights):
            assert not torch.equal(w0, w1), f"{layer.name}: a trainable weight did not move"
    if tmp_path is not None:
        path = tmp_path / f"{layer.name}.tw"
        model.save(path)
        loaded = load_model(path)
        np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
