"""Every layer of ``trainwell.layers`` through ``run_layer_test`` (build, call, counts, config, one
training step, save/load), the channels-last layouts, Keras 2's module names and rank errors.

Numerical parity with Keras for each of these layers lives in ``test_keras_parity.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from layer_testing import run_layer_test
from trainwell import layers
from trainwell._errors import ConfigError, DataError
from trainwell.models import Sequential

IMG, SEQ, VEC = (None, 9, 8, 3), (None, 10, 4), (None, 6)

# (class, kwargs, input shape, output shape, trainable weights, non-trainable weights)
CASES = [
    ("Dense", {"units": 5}, SEQ, (None, 10, 5), 2, 0),
    ("Activation", {"activation": "relu"}, SEQ, SEQ, 0, 0),
    ("Flatten", {}, IMG, (None, 216), 0, 0),
    ("Reshape", {"target_shape": (-1, 8)}, IMG, (None, 27, 8), 0, 0),
    ("Permute", {"dims": (2, 1)}, SEQ, (None, 4, 10), 0, 0),
    ("RepeatVector", {"n": 3}, VEC, (None, 3, 6), 0, 0),
    ("Rescaling", {"scale": 0.5, "offset": 1.0}, VEC, VEC, 0, 0),
    ("Softmax", {}, SEQ, SEQ, 0, 0),
    ("ReLU", {"max_value": 6.0}, SEQ, SEQ, 0, 0),
    ("LeakyReLU", {}, SEQ, SEQ, 0, 0),
    ("PReLU", {"shared_axes": [1]}, SEQ, SEQ, 1, 0),
    ("ELU", {}, SEQ, SEQ, 0, 0),
    ("Conv1D", {"filters": 5, "kernel_size": 3, "padding": "same", "strides": 2}, SEQ, (None, 5, 5), 2, 0),
    ("Conv2D", {"filters": 4, "kernel_size": 3}, IMG, (None, 7, 6, 4), 2, 0),
    ("Conv2D", {"filters": 4, "kernel_size": 2, "dilation_rate": 2, "padding": "same"}, IMG,
     (None, 9, 8, 4), 2, 0),
    ("SeparableConv2D", {"filters": 4, "kernel_size": 3, "depth_multiplier": 2}, IMG, (None, 7, 6, 4), 3, 0),
    ("Conv2DTranspose", {"filters": 2, "kernel_size": 3, "strides": 2}, IMG, (None, 19, 17, 2), 2, 0),
    ("MaxPooling1D", {}, SEQ, (None, 5, 4), 0, 0),
    ("AveragePooling1D", {"pool_size": 3, "strides": 1}, SEQ, (None, 8, 4), 0, 0),
    ("MaxPooling2D", {"pool_size": (2, 2)}, IMG, (None, 4, 4, 3), 0, 0),
    ("AveragePooling2D", {"pool_size": 2, "padding": "same"}, IMG, (None, 5, 4, 3), 0, 0),
    ("GlobalMaxPooling1D", {}, SEQ, (None, 4), 0, 0),
    ("GlobalAveragePooling1D", {}, SEQ, (None, 4), 0, 0),
    ("GlobalMaxPooling2D", {}, IMG, (None, 3), 0, 0),
    ("GlobalAveragePooling2D", {"keepdims": True}, IMG, (None, 1, 1, 3), 0, 0),
    ("BatchNormalization", {}, IMG, IMG, 2, 2),
    ("LayerNormalization", {}, SEQ, SEQ, 2, 0),
    ("Normalization", {"axis": None, "mean": 0.5, "variance": 4.0}, IMG, IMG, 0, 2),
    ("Dropout", {"rate": 0.5}, VEC, VEC, 0, 0),
    ("SpatialDropout1D", {"rate": 0.5}, SEQ, SEQ, 0, 0),
    ("SpatialDropout2D", {"rate": 0.5}, IMG, IMG, 0, 0),
    ("GaussianNoise", {"stddev": 0.1}, VEC, VEC, 0, 0),
    ("UpSampling2D", {"size": (2, 3)}, IMG, (None, 18, 24, 3), 0, 0),
    ("ZeroPadding2D", {"padding": 1}, IMG, (None, 11, 10, 3), 0, 0),
    ("Cropping2D", {"cropping": ((1, 2), (0, 3))}, IMG, (None, 6, 5, 3), 0, 0),
    ("Concatenate", {}, [SEQ, (None, 10, 2)], (None, 10, 6), 0, 0),
    ("Add", {}, [SEQ, SEQ], SEQ, 0, 0),
    ("Subtract", {}, [VEC, VEC], VEC, 0, 0),
    ("Multiply", {}, [VEC, VEC, VEC], VEC, 0, 0),
    ("Average", {}, [VEC, VEC], VEC, 0, 0),
    ("Maximum", {}, [VEC, VEC], VEC, 0, 0),
    ("Minimum", {}, [VEC, VEC], VEC, 0, 0),
    ("Dot", {"axes": 1}, [VEC, VEC], (None, 1), 0, 0),
]


@pytest.mark.parametrize("name, kwargs, shape, out, n_trainable, n_frozen", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_layer(tmp_path, name, kwargs, shape, out, n_trainable, n_frozen):
    run_layer_test(getattr(layers, name), kwargs, shape, out, n_trainable, n_frozen, tmp_path=tmp_path)


def test_embedding(tmp_path):
    run_layer_test(layers.Embedding, {"input_dim": 12, "output_dim": 3}, (None, 5), (None, 5, 3), 1, 0,
                   tmp_path=tmp_path, integer_max=12)


def test_every_layer_class_has_a_case():
    tested = {c[0] for c in CASES} | {"Embedding", "InputLayer"}
    assert set(layers.LAYERS) == tested


# ---------------------------------------------------------------------------------------------
# layouts


def test_conv2d_kernel_is_in_keras_layout_and_inputs_are_channels_last():
    conv = layers.Conv2D(2, (3, 1), use_bias=False)
    conv.build((5, 4, 3))
    (kernel,) = conv.get_weights()
    assert kernel.shape == (3, 1, 3, 2)  # (kh, kw, in, out)
    x = np.random.default_rng(0).normal(size=(1, 5, 4, 3)).astype("float32")
    with torch.no_grad():
        y = conv(torch.as_tensor(x)).numpy()
    # Output pixel (0, 0), filter 1: the sum over the 3x1 window and the 3 input channels.
    expected = sum(x[0, i, 0, c] * kernel[i, 0, c, 1] for i in range(3) for c in range(3))
    assert y.shape == (1, 3, 4, 2) and y[0, 0, 0, 1] == pytest.approx(expected, rel=1e-5)


def test_flatten_uses_keras_row_major_order():
    x = torch.arange(24.0).reshape(1, 2, 3, 4)
    np.testing.assert_array_equal(layers.Flatten()(x).numpy(), np.arange(24.0)[None])


def test_dense_on_rank_3_inputs_applies_to_the_last_axis():
    dense = layers.Dense(2)
    dense.build((5, 3))
    x = torch.randn(4, 5, 3)
    np.testing.assert_allclose(dense(x).detach().numpy(), (x @ dense.kernel + dense.bias).detach().numpy())


# ---------------------------------------------------------------------------------------------
# rank errors and argument checks


@pytest.mark.parametrize("layer, fragment", [
    (layers.Conv2D(4, 3), r"rank 4 .* received shape \(None, 28, 28\).*Reshape\(\(28, 28, 1\)\)"),
    (layers.MaxPooling2D(), r"rank 4 .*\(None, 28, 28\)"),
    (layers.Conv1D(4, 3), r"rank 3 .*\(None, 28, 28, 1\)"),
    (layers.RepeatVector(2), r"rank 2 .*add Flatten\(\)"),
])
def test_wrong_rank_is_a_data_error_naming_the_layer_and_the_fix(layer, fragment):
    shape = (28, 28, 1) if isinstance(layer, (layers.Conv1D, layers.RepeatVector)) else (28, 28)
    with pytest.raises(DataError, match=fr"Layer '{layer.name}' .*{fragment}"):
        Sequential([layers.Input(shape=shape), layer])


def test_images_fed_to_a_dense_model_say_add_flatten():
    model = Sequential([layers.Input(shape=(784,)), layers.Dense(10, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy")
    with pytest.raises(DataError, match=r"\(None, 28, 28\).*Add Flatten\(\) as the first layer"):
        model.fit(np.zeros((4, 28, 28)), np.zeros(4), verbose=0)
    unbuilt = Sequential([layers.Dense(10, activation="softmax")])
    unbuilt.compile(loss="sparse_categorical_crossentropy")
    with pytest.raises(DataError, match=r"gives samples of shape \(28, 10\).*Add Flatten\(\)"):
        unbuilt.fit(np.zeros((4, 28, 28)), np.zeros(4), verbose=0)


@pytest.mark.parametrize("make, fragment", [
    (lambda: layers.Conv2D(0, 3), "`filters` expects a positive integer"),
    (lambda: layers.Conv2D(4, (3, 3, 3)), "`kernel_size` expects a positive integer or 2"),
    (lambda: layers.Conv2D(4, 3, padding="full"), "`padding` expects 'valid' or 'same'"),
    (lambda: layers.Conv2D(4, 3, data_format="channels_first"), "channels_last"),
    (lambda: layers.MaxPooling2D(pool_size=-1), "`pool_size`"),
    (lambda: layers.Reshape((0, 3)), "`target_shape`"),
    (lambda: layers.Permute((1, 3)), "permutation of 1..n"),
    (lambda: layers.Concatenate(axis=0), "batch axis"),
    (lambda: layers.Dot(axes=0), "`axes`"),
    (lambda: layers.UpSampling2D(interpolation="cubic"), "`interpolation`"),
])
def test_bad_arguments_name_the_argument(make, fragment):
    with pytest.raises(ConfigError, match=fragment):
        make()


def test_keras_2_module_names_import():
    from trainwell.layers.convolutional import Conv2D
    from trainwell.layers.core import Dense, Dropout, Flatten
    from trainwell.layers.embeddings import Embedding
    from trainwell.layers.merge import Concatenate, concatenate
    from trainwell.layers.noise import GaussianNoise
    from trainwell.layers.normalization import BatchNormalization
    from trainwell.layers.pooling import MaxPooling2D

    assert Dense is layers.Dense and Conv2D is layers.Conv2D and Flatten is layers.Flatten
    assert {Dropout, Embedding, Concatenate, GaussianNoise, BatchNormalization, MaxPooling2D} <= set(
        layers.LAYERS.values())
    assert concatenate([layers.Input((2,)), layers.Input((3,))]).shape == (None, 5)
    assert layers.MaxPool2D is layers.MaxPooling2D and layers.Convolution2D is layers.Conv2D


def test_auto_names_follow_keras():
    from trainwell.layers.base import _snake

    names = ("Conv2D", "MaxPooling2D", "Conv2DTranspose", "PReLU", "GlobalAveragePooling1D")
    assert [_snake(n) for n in names] == ["conv2d", "max_pooling2d", "conv2d_transpose", "p_re_lu",
                                         "global_average_pooling1d"]
