"""The functional API (``trainwell.functional``, ``models.Model``): graphs of layers, several inputs
and outputs, per-output losses and metrics, summary, config, files, freezing, callbacks, the doctor,
compare and DDP on graph models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import trainwell as tw
from trainwell import training
from trainwell._errors import ConfigError, ConfigTypeError, DataError
from trainwell.callbacks import EarlyStopping, ModelCheckpoint
from trainwell.layers import (
    Add,
    BatchNormalization,
    Concatenate,
    Dense,
    Dropout,
    Input,
    Multiply,
)
from trainwell.models import Model, Sequential, load_model
from trainwell.utils import set_random_seed

RNG = np.random.default_rng(0)
X = RNG.normal(size=(96, 6)).astype("float32")
Y = (X @ RNG.normal(size=(6, 1)) + 0.5).astype("float32")
A, B = X[:, :4], X[:, 4:]
LABELS = (X[:, 0] > 0).astype("int64") + (X[:, 1] > 0).astype("int64")  # 3 classes


def tabular_graph(seed=0) -> Model:
    """Dense layers as a graph: the functional spelling of ``tabular_sequential``."""
    set_random_seed(seed)
    inputs = Input(shape=(6,))
    x = Dense(8, activation="relu")(inputs)
    outputs = Dense(1)(x)
    return Model(inputs, outputs)


def tabular_sequential(seed=0) -> Sequential:
    set_random_seed(seed)
    return Sequential([Input(shape=(6,)), Dense(8, activation="relu"), Dense(1)])


def two_in_two_out(seed=0, as_dict=False) -> Model:
    """Inputs 'a' (4 features) and 'b' (2), a regression head 'reg' and a 3-class head 'cls'."""
    set_random_seed(seed)
    a, b = Input(shape=(4,), name="a"), Input(shape=(2,), name="b")
    merged = Concatenate()([Dense(8, activation="relu")(a), Dense(8, activation="relu")(b)])
    reg = Dense(1, name="reg")(merged)
    cls = Dense(3, activation="softmax", name="cls")(merged)
    if as_dict:
        return Model({"a": a, "b": b}, {"reg": reg, "cls": cls})
    return Model([a, b], [reg, cls])


# ---------------------------------------------------------------------------------------------
# graph structure


def test_a_chain_graph_trains_exactly_as_the_same_sequential():
    graph, seq = tabular_graph(), tabular_sequential()
    assert graph.is_chain and [type(la) for la in graph.layers] == [Dense, Dense]
    seq.set_weights(graph.get_weights())
    for model in (graph, seq):
        model.compile(optimizer="adam", loss="mse")
    h1 = graph.fit(X, Y, epochs=3, batch_size=16, verbose=0, shuffle=False)
    h2 = seq.fit(X, Y, epochs=3, batch_size=16, verbose=0, shuffle=False)
    assert h1.history["loss"] == h2.history["loss"]
    np.testing.assert_array_equal(graph.predict(X, verbose=0), seq.predict(X, verbose=0))
    # The same model object is also reached as trainwell.Model, with Keras's attributes.
    assert tw.Model is Model and graph.input_shape == (None, 6) and graph.output_shape == (None, 1)
    assert graph.inputs[0].shape == (None, 6) and graph.outputs[0].shape == (None, 1)


def test_branches_merge_and_a_shared_layer():
    set_random_seed(1)
    inputs = Input(shape=(6,))
    shared = Dense(6, activation="tanh", name="shared")
    left = shared(inputs)
    right = shared(left)  # the same weights twice
    out = Dense(1, name="out")(Add()([left, right]))
    model = Model(inputs, out)
    assert not model.is_chain
    assert [la.name for la in model.layers][0] == "shared" and len(model.layers) == 3
    x = torch.as_tensor(X)
    with torch.no_grad():
        h = torch.tanh(x @ shared.kernel + shared.bias)
        h2 = torch.tanh(h @ shared.kernel + shared.bias)
        expected = (h + h2) @ model.get_layer("out").kernel + model.get_layer("out").bias
    np.testing.assert_allclose(model.predict(X, verbose=0), expected.numpy(), rtol=1e-5, atol=1e-6)
    restored = Model.from_config(model.get_config())
    restored.set_weights(model.get_weights())
    np.testing.assert_allclose(restored.predict(X, verbose=0), model.predict(X, verbose=0), rtol=1e-6)


def test_summary_has_keras_connected_to_column():
    tw.utils.clear_session()  # auto names from 'dense' again
    lines = []
    two_in_two_out().summary(print_fn=lines.append)
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
            for line in lines[0].splitlines() if line.startswith("│")}
    assert rows["a (InputLayer)"] == ["(None, 4)", "0", "-"]
    assert rows["concatenate (Concatenate)"] == ["(None, 16)", "0", "dense[0][0], dense_1[0][0]"]
    assert rows["cls (Dense)"] == ["(None, 3)", "51", "concatenate[0][0]"]
    assert "Total params: 132 (528 B)" in lines[0]


def test_graph_errors_name_the_problem():
    a, b = Input(shape=(3,), name="first"), Input(shape=(3,), name="second")
    out = Dense(1)(Add()([a, b]))
    with pytest.raises(ConfigError, match="depend on Input 'second'"):
        Model(a, out)
    with pytest.raises(ConfigTypeError, match="`outputs` expects the symbolic tensors"):
        Model(a, np.zeros(3))
    with pytest.raises(ConfigError, match="needs both"):
        Model()
    with pytest.raises(DataError, match="merges a list of at least 2"):
        Add()(a)
    with pytest.raises(DataError, match="one shape"):
        Multiply()([a, Input(shape=(4,))])


# ---------------------------------------------------------------------------------------------
# several inputs and outputs


def test_two_inputs_two_outputs_fit_predict_evaluate_with_lists():
    model = two_in_two_out()
    model.compile(optimizer="adam", loss=["mse", "sparse_categorical_crossentropy"], loss_weights=[1.0, 0.5],
                  metrics=[[], ["accuracy"]])
    history = model.fit([A, B], [Y, LABELS], epochs=2, batch_size=16, verbose=0, validation_split=0.25)
    assert sorted(history.history) == ["cls_accuracy", "cls_loss", "loss", "reg_loss", "val_cls_accuracy",
                                       "val_cls_loss", "val_loss", "val_reg_loss"]
    reg, cls = model.predict([A, B], verbose=0)
    assert reg.shape == (96, 1) and cls.shape == (96, 3)
    np.testing.assert_allclose(cls.sum(1), 1.0, rtol=1e-5)
    # The loss is Keras's weighted sum of the per-output losses.
    loss, reg_loss, cls_loss, accuracy = model.evaluate([A, B], [Y, LABELS], verbose=0, batch_size=32)
    mse = float(np.mean((reg - Y) ** 2))
    ce = float(np.mean(-np.log(cls[np.arange(96), LABELS])))
    assert loss == pytest.approx(mse + 0.5 * ce, rel=1e-4)
    assert (reg_loss, cls_loss) == (pytest.approx(mse, rel=1e-4), pytest.approx(ce, rel=1e-4))  # unweighted
    assert accuracy == pytest.approx(float(np.mean(cls.argmax(1) == LABELS)))


def test_dicts_of_inputs_outputs_losses_and_metrics():
    model = two_in_two_out(as_dict=True)
    model.compile(optimizer="adam", loss={"reg": "mse", "cls": "sparse_categorical_crossentropy"},
                  loss_weights={"reg": 2.0, "cls": 1.0}, metrics={"cls": "accuracy", "reg": ["mae"]})
    model.fit({"a": A, "b": B}, {"reg": Y, "cls": LABELS}, epochs=1, verbose=0)
    out = model.predict({"b": B, "a": A}, verbose=0)
    assert set(out) == {"reg", "cls"} and out["cls"].shape == (96, 3)
    logs = model.evaluate({"a": A, "b": B}, {"reg": Y, "cls": LABELS}, verbose=0, return_dict=True)
    assert set(logs) == {"loss", "reg_loss", "cls_loss", "reg_mae", "cls_accuracy"}
    with pytest.raises(DataError, match=r"no entry for \['b'\]"):
        model.predict({"a": A}, verbose=0)
    with pytest.raises(DataError, match="Input 'b' expects samples of shape \\(2,\\)"):
        model.predict({"a": A, "b": X}, verbose=0)
    with pytest.raises(ConfigError, match="not outputs of this model"):
        model.compile(loss={"regression": "mse"})


def test_wrong_number_of_input_arrays():
    model = two_in_two_out()
    model.compile(loss=["mse", "sparse_categorical_crossentropy"])
    with pytest.raises(DataError, match="expects 2 arrays"):
        model.fit([A], [Y, LABELS], verbose=0)
    with pytest.raises(ConfigError, match="3 entries for 2 outputs"):
        model.compile(loss=["mse", "mse", "mse"])


# ---------------------------------------------------------------------------------------------
# files, callbacks, freezing


@pytest.mark.parametrize("as_dict", [False, True])
def test_save_and_load_a_multi_output_graph(tmp_path, as_dict):
    model = two_in_two_out(as_dict=as_dict)
    model.compile(optimizer="adam", loss=["mse", "sparse_categorical_crossentropy"] if not as_dict else
                  {"reg": "mse", "cls": "sparse_categorical_crossentropy"}, metrics=[["mae"], ["accuracy"]]
                  if not as_dict else {"cls": ["accuracy"]})
    xs = [A, B] if not as_dict else {"a": A, "b": B}
    ys = [Y, LABELS] if not as_dict else {"reg": Y, "cls": LABELS}
    model.fit(xs, ys, epochs=2, verbose=0)
    model.save(tmp_path / "graph.tw")
    loaded = load_model(tmp_path / "graph.tw")
    assert isinstance(loaded, Model) and not isinstance(loaded, Sequential)
    assert loaded.output_names == model.output_names
    before, after = model.predict(xs, verbose=0), loaded.predict(xs, verbose=0)
    pairs = zip(before.values(), after.values()) if as_dict else zip(before, after)
    for u, v in pairs:
        np.testing.assert_array_equal(u, v)
    assert loaded.evaluate(xs, ys, verbose=0) == model.evaluate(xs, ys, verbose=0)
    # The optimizer state came back: one more epoch gives the same weights on both.
    set_random_seed(3)
    model.fit(xs, ys, epochs=1, verbose=0, shuffle=False)
    set_random_seed(3)
    loaded.fit(xs, ys, epochs=1, verbose=0, shuffle=False)
    for u, v in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-7)


def test_callbacks_on_a_graph_model(tmp_path):
    model = tabular_graph()
    model.compile(optimizer="adam", loss="mse")
    stop = EarlyStopping(monitor="val_loss", patience=0, min_delta=1e9, restore_best_weights=True)
    history = model.fit(X, Y, epochs=5, verbose=0, validation_split=0.25,
                        callbacks=[stop, ModelCheckpoint(tmp_path / "best.tw")])
    assert len(history.history["loss"]) == 2 and stop.stopped_epoch == 1
    assert isinstance(load_model(tmp_path / "best.tw"), Model)


def test_model_trainable_false_freezes_every_layer():
    model = two_in_two_out()
    model.trainable = False
    assert all(not layer.trainable for layer in model.layers)
    assert model.trainable_weights == [] and len(model.non_trainable_weights) == 8
    lines = []
    model.summary(print_fn=lines.append)
    assert "Trainable params: 0 (0 B)" in "\n".join(lines)
    # Unfreeze one head: only its weights train (a recompile is needed, as in Keras).
    model.get_layer("reg").trainable = True
    model.compile(optimizer="adam", loss=["mse", "sparse_categorical_crossentropy"])
    before = [w.copy() for w in model.get_weights()]
    model.fit([A, B], [Y, LABELS], epochs=1, verbose=0)
    changed = [not np.array_equal(u, v) for u, v in zip(before, model.get_weights())]
    names = [f"{la.name}/{n}" for la in model.layers for n in la.weight_names()]
    assert [n for n, c in zip(names, changed) if c] == ["reg/kernel", "reg/bias"]


def test_frozen_batch_normalization_runs_in_inference_mode():
    set_random_seed(0)
    bn = BatchNormalization()
    model = Sequential([Input(shape=(6,)), bn, Dense(1)])
    model.trainable = False
    model.get_layer(index=1).trainable = True
    model.compile(optimizer="sgd", loss="mse")
    model.fit(X * 10 + 3, Y, epochs=1, verbose=0)
    # Frozen: the moving statistics did not move, and the layer normalised with them while training.
    np.testing.assert_array_equal(bn.moving_mean.numpy(), np.zeros(6, dtype="float32"))
    np.testing.assert_array_equal(bn.moving_variance.numpy(), np.ones(6, dtype="float32"))


def test_frozen_model_passes_the_trainable_flag_through_save(tmp_path):
    model = tabular_graph()
    model.layers[0].trainable = False
    model.compile(optimizer="adam", loss="mse")
    model.fit(X, Y, epochs=1, verbose=0)
    model.save(tmp_path / "m.tw")
    loaded = load_model(tmp_path / "m.tw")
    assert [la.trainable for la in loaded.layers] == [False, True]
    assert len(loaded.trainable_weights) == 2  # the optimizer state of the trainable layer only
    loaded.fit(X, Y, epochs=1, verbose=0)
    np.testing.assert_array_equal(loaded.layers[0].get_weights()[0], model.layers[0].get_weights()[0])


# ---------------------------------------------------------------------------------------------
# the doctor, compare, the step choice


def test_doctor_and_compare_take_graph_models():
    model = tabular_graph()
    model.compile(optimizer="adam", loss="mse")
    findings = model.diagnose(X * 1000, Y, epochs=1, verbose=0)
    assert any(f.code == "unscaled_inputs" for f in findings)
    result = tw.experiments.compare({"graph": lambda: tabular_graph(), "seq": lambda: tabular_sequential()},
                                    X, Y, compile={"optimizer": "adam", "loss": "mse"},
                                    fit={"epochs": 2, "verbose": 0}, seeds=1, workers=1)
    assert len(result.table) == 2 and result.table.isna().sum().sum() < result.table.size
    assert isinstance(result.best, Model)


def test_branched_graphs_use_the_autograd_step_and_chains_the_fused_one():
    chain, branched = tabular_graph(), two_in_two_out()
    chain.compile(optimizer="adam", loss="mse")
    branched.compile(optimizer="adam", loss=["mse", "mse"])
    from trainwell import fastpath

    assert isinstance(training.select_step(training.StepContext(chain)), fastpath.FusedStep)
    assert not isinstance(training.select_step(training.StepContext(branched)), fastpath.FusedStep)


def test_dropout_in_a_graph_is_off_in_predict():
    set_random_seed(0)
    inputs = Input(shape=(6,))
    out = Dense(1)(Dropout(0.9)(inputs))
    model = Model(inputs, out)
    np.testing.assert_array_equal(model.predict(X, verbose=0), model.predict(X, verbose=0))


def test_doctor_probes_each_layer_of_a_branched_graph_and_a_convnet():
    # A branch whose ReLU layer starts dead (bias -10 on inputs in [0, 1]) is named by the doctor.
    set_random_seed(0)
    a, b = Input(shape=(4,), name="a"), Input(shape=(2,), name="b")
    dead = Dense(8, activation="relu", bias_initializer=tw.initializers.Constant(-10.0),
                 name="dead_branch")(a)
    model = Model([a, b], Dense(1)(Concatenate()([dead, Dense(4, activation="tanh")(b)])))
    model.compile(optimizer="sgd", loss="mse")
    rng = np.random.default_rng(0)
    findings = model.diagnose([rng.random((64, 4)), rng.random((64, 2))], rng.random(64), epochs=2, verbose=0)
    codes = {f.code: f for f in findings}
    assert "detector_failed" not in codes
    assert codes["dead_units"].layer == "dead_branch"
    # A convnet: dead units are counted per channel; nothing in the doctor fails.
    conv = Sequential([Input(shape=(6, 6, 1)), tw.layers.Conv2D(3, 3, activation="relu"),
                       tw.layers.Flatten(), Dense(2, activation="softmax")])
    conv.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    findings = conv.diagnose(rng.random((64, 6, 6, 1)), rng.integers(0, 2, 64), epochs=1, verbose=0)
    assert all(f.code != "detector_failed" for f in findings), findings


def test_file_summary_of_a_graph_model_builds_nothing_real(tmp_path):
    from trainwell._file_summary import summarize

    model = two_in_two_out()
    model.compile(optimizer="adam", loss=["mse", "sparse_categorical_crossentropy"])
    model.save(tmp_path / "g.tw")
    text = summarize(tmp_path / "g.tw")
    assert "Inputs: (None, 4), (None, 2)" in text and "Total params: 132" in text
    assert "(Concatenate)" in text and "Connected to" in text
    concat = next(la.name for la in model.layers if isinstance(la, Concatenate))
    assert f"{concat}[0][0]" in text


def test_damaged_or_huge_graph_files_are_refused_before_allocating(tmp_path):
    from trainwell import saving
    from trainwell._container import write_container
    from trainwell._errors import ModelFileError

    model = two_in_two_out()
    header, tensors = saving.model_state(model)
    header["model"]["config"]["layers"][-1]["inbound_nodes"] = [[["nowhere", 0, 0, {}]]]
    write_container(str(tmp_path / "broken.tw"), header, tensors)
    with pytest.raises(ModelFileError, match="broken.tw.*reads tensors that no layer makes"):
        load_model(tmp_path / "broken.tw")
    header, tensors = saving.model_state(model)
    dense = next(e for e in header["model"]["config"]["layers"] if e["class_name"] == "Dense")
    dense["config"]["units"] = 10**9
    write_container(str(tmp_path / "huge.tw"), header, tensors)
    with pytest.raises(ModelFileError, match="above max_params"):
        load_model(tmp_path / "huge.tw")
