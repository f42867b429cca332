"""``Model`` and ``Sequential``: Keras's ``compile``/``fit``/``evaluate``/``predict`` on layers.

``Model(inputs, outputs)`` is the functional API (its graph lives in ``functional.py``);
``Sequential`` is the special case of a chain of layers, built as layers are added. Both share
everything else here: compile, fit, evaluate, predict, weights, summary, saving. The model is a
``torch.nn.Module``; the loop lives in ``training.py`` and the file format in ``saving.py``.
``load_model`` builds a model (``from_config``) from a file ``saving`` has read and checked.
"""

from __future__ import annotations

import io
import numbers

import numpy as np
import torch
from torch import nn

from . import diagnostics as diagnostics_module
from . import distributed, functional, keras_files, saving, training
from . import layers as layers_module
from . import losses as losses_module
from . import metrics as metrics_module
from . import optimizers as optimizers_module
from ._errors import ConfigError, ConfigTypeError, describe
from .callbacks import History
from .layers import InputLayer, KerasTensor, Layer


class Model(nn.Module):
    """A model of layers connected by the functional API: ``Model(inputs, outputs)``.

    Args:
        inputs: The ``Input(...)`` tensor(s): one, a list, or a dict by name.
        outputs: The tensor(s) the layer calls made from them: one, a list, or a dict by name.
        name: Model name.
        trainable: False freezes every layer.

    Several inputs take ``x`` as a list (or dict) of arrays; several outputs take ``y`` the same
    way and ``compile`` takes one loss (and ``loss_weights``, ``metrics``) per output, as a list
    or a dict by output name. ``predict`` then returns a list (or dict) of arrays.

    Example:
        >>> inputs = Input(shape=(8,))
        >>> x = Dense(16, activation='relu')(inputs)
        >>> outputs = Dense(1)(x)
        >>> model = Model(inputs, outputs)
        >>> model.compile(optimizer='adam', loss='mse')
    """

    def __init__(self, inputs=None, outputs=None, name: str | None = None, trainable: bool = True):
        self._init_state(name, "functional")
        if type(self) is Model:
            if inputs is None or outputs is None:
                raise ConfigError("Model(inputs, outputs) needs both: the Input(...) tensors and the tensors "
                                  "the layers made from them. Subclassing Model with a call() is not "
                                  "supported; for a stack of layers use Sequential([...]).")
            self._set_graph(functional.Graph(inputs, outputs))
        if not trainable:
            self.trainable = False

    def _init_state(self, name, default_name: str) -> None:
        super().__init__()
        self._trainable = True
        self._graph = None  # the functional graph; None for a Sequential
        self._in_packing = self._out_packing = None  # several inputs/outputs as one tensor
        self.name = name or layers_module.unique_name(default_name)
        self._stack = nn.ModuleList()
        # Bumped on every change of layers, weights' identity or device: fastpath's cached plans check it.
        self._version = 0
        self._input_shape: tuple[int, ...] | None = None
        self.optimizer = None
        self.loss = None  # what was passed to compile, as Keras keeps it
        self.compiled_loss = None  # the Loss the loop uses (resolved from `loss`)
        self.loss_weights = None
        self.metrics_identifiers: list = []
        self.weighted_metrics_identifiers: list = []
        self.compiled_metrics: list = []
        self.stop_training = False
        self.history = None
        self.epochs_trained = 0
        # Per-epoch shuffles come from seed + epoch, so a resumed fit repeats an uninterrupted one.
        self.shuffle_seed = int(torch.randint(0, 2**31 - 1, ()).item())
        self.device = torch.device("cpu")
        self.precision = "32-true"  # or "bf16-mixed": set by compile/fit
        self.preprocessing = None  # a tabular.Preprocessor config when built from a CSV
        # Set by load_model and BackupAndRestore, read (and cleared) by the next fit's first step
        # (training._resume_point): torch's CPU random state to continue from, and the epoch to resume at.
        self._resume_rng_state: torch.Tensor | None = None
        self._initial_epoch_override: int | None = None
        self._batch_steps = training.BatchStepCache()  # train_on_batch's step, kept between calls

    def _set_graph(self, graph: functional.Graph) -> None:
        self._graph = graph
        self._stack.extend(graph.layers)  # registers the layers; fastpath reads chains from it
        in_shapes = [t.sample_shape for t in graph.inputs]
        self._input_shape = in_shapes[0] if len(in_shapes) == 1 else (functional.Packing(in_shapes).width,)
        self._in_packing = functional.Packing(in_shapes) if len(in_shapes) > 1 else None
        self._out_packing = functional.Packing([t.sample_shape for t in graph.outputs]) \
            if len(graph.outputs) > 1 else None
        nodes = graph.nodes
        # A plain chain (one input, one output, each layer once, reading the previous one) runs like
        # a Sequential, including the fused Dense step.
        self.is_chain = (len(graph.inputs) == 1 and len(graph.outputs) == 1
                         and len(graph.layers) == len(nodes)
                         and all(n.single and n.inputs[0] is (nodes[i - 1].output if i else graph.inputs[0])
                                 for i, n in enumerate(nodes)))
        self._version += 1

    # -- structure --------------------------------------------------------------------------
    @property
    def layers(self) -> list[Layer]:
        """The layers in the order they run, without the ``Input``s (as in Keras)."""
        return list(self._stack)

    @property
    def inputs(self) -> list[KerasTensor]:
        return list(self._graph.inputs)

    @property
    def outputs(self) -> list[KerasTensor]:
        return list(self._graph.outputs)

    @property
    def input_names(self) -> list[str]:
        return self._graph.input_keys or [t.node.layer.name for t in self._graph.inputs]

    @property
    def output_names(self) -> list[str]:
        return self._graph.output_keys or [t.node.layer.name for t in self._graph.outputs]

    @property
    def trainable(self) -> bool:
        return self._trainable

    @trainable.setter
    def trainable(self, value: bool) -> None:
        """``model.trainable = False`` freezes every layer, as in Keras (recompile before training)."""
        self._trainable = bool(value)
        for layer in self._stack:
            layer.trainable = value
        self._version += 1

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        """A layer by name or by index."""
        if index is not None:
            try:
                return self.layers[index]
            except IndexError:
                raise ConfigError(f"get_layer: index {index} is out of range for "
                                  f"{len(self.layers)} layers.") from None
        for layer in self._stack:
            if layer.name == name:
                return layer
        names = ", ".join(layer.name for layer in self._stack)
        raise ConfigError(f"No layer named {name!r} in '{self.name}'. Layers: {names}.")

    # -- building ---------------------------------------------------------------------------
    @property
    def built(self) -> bool:
        return bool(self._stack) and all(layer.built for layer in self._stack)

    @property
    def input_shape_hint(self) -> tuple[int, ...] | None:
        """One sample's shape as the loop sees it (several inputs: the width of their packing)."""
        return self._input_shape

    @property
    def input_shape(self):
        shapes = [t.shape for t in self._graph.inputs]
        return shapes[0] if len(shapes) == 1 else shapes

    @property
    def output_shape(self):
        shapes = [t.shape for t in self._graph.outputs]
        return shapes[0] if len(shapes) == 1 else shapes

    def build(self, input_shape=None) -> None:
        """A functional model is built when it is made; kept for Keras compatibility."""

    def ensure_built(self, sample_shape: tuple[int, ...]) -> None:
        """Nothing to build: the Input shapes built every layer."""

    # -- forward ----------------------------------------------------------------------------
    def call(self, x: torch.Tensor, final_activation: bool = True) -> torch.Tensor:
        """Forward pass on the loop's tensor (several inputs/outputs packed side by side)."""
        xs = [x] if self._in_packing is None else self._in_packing.unpack(x)
        outs = self._graph.run(xs, final_activation)
        return outs[0] if self._out_packing is None else self._out_packing.pack(outs)

    def pack_inputs(self, x, name: str, device) -> torch.Tensor | None:
        """Several input arrays (a list or dict) as one tensor for the loop; None for one input."""
        if self._graph is None or (self._in_packing is None and not isinstance(x, dict)):
            return None
        shapes = [t.sample_shape for t in self._graph.inputs]
        return functional.pack_arrays(x, self._graph.input_keys, self.input_names, shapes, name, device)

    def unpack_outputs(self, out: np.ndarray):
        """``predict``'s packed array as one array per output: a list, or a dict by output name."""
        if self._graph is None or self._out_packing is None:
            return out
        parts = [p.numpy() for p in self._out_packing.unpack(torch.from_numpy(out))]
        keys = self._graph.output_keys
        return dict(zip(keys, parts)) if keys is not None else parts

    def forward(self, x):
        """``model(x)`` on a tensor, array or DataFrame; returns a tensor, as Keras does."""
        if not isinstance(x, torch.Tensor):
            x = training.prepare_x(self, x, "x", self.device)
        elif not self.built:
            self.ensure_built(tuple(x.shape[1:]))
        return self.call(x)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for layer in self._stack for p in layer.trainable_weights]

    def set_device(self, device=None) -> torch.device:
        """Move the model to ``device`` (None keeps the current one) and return it."""
        if device is not None:
            dev = training.resolve_device(device)
            if dev != self.device:
                self.device = dev
                self.to(dev)
                self._version += 1
        return self.device

    # -- compile ----------------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, metrics=None, weighted_metrics=None,
                run_eagerly=False, steps_per_execution=1, jit_compile="auto", auto_scale_loss=True,
                device=None, precision=None) -> None:
        """Configure the model for training.

        Args:
            optimizer: Name ('adam', 'sgd', 'rmsprop', ...) or an optimizer instance.
                Keras's default 'rmsprop'.
            loss: Name ('mean_squared_error', 'categorical_crossentropy', ...), a Loss, or a callable.
            loss_weights: Optional scalar multiplying the loss.
            metrics: List of names ('accuracy', 'mae', ...) or Metric instances, computed without
                sample or class weights (as Keras does).
            weighted_metrics: Metrics computed with the sample and class weights (named
                'weighted_<name>' when an unweighted metric has the name).
            device: 'auto' (GPU when present), 'cpu', 'cuda' or 'cuda:N'; None keeps the current device.
            precision: '32-true' (float32, the default) or 'bf16-mixed' (layers run in bfloat16 under
                ``torch.autocast``, weights and loss stay float32; on CPUs and bfloat16 GPUs). Keras's
                policy name 'mixed_bfloat16' is accepted too. None keeps the current setting.

        Raises:
            ConfigError: an unknown optimizer, loss, metric or precision name (the message lists the
                valid ones); device='cuda' without a GPU.
        """
        if loss is None:
            raise ConfigError("compile() needs a loss, e.g. loss='mean_squared_error' for regression or "
                              "loss='categorical_crossentropy' for classification.")
        self.optimizer = optimizers_module.get(optimizer)
        if self._out_packing is not None:  # several outputs: one loss, weight and metric list each
            if weighted_metrics:
                raise ConfigError("compile(weighted_metrics=...) is not supported yet for a model with "
                                  "several outputs; pass them as `metrics` (computed without weights).")
            self._compile_outputs(loss, loss_weights, metrics)
        else:
            self.loss = loss  # what was passed, as Keras keeps it; the loop uses compiled_loss
            self.compiled_loss = losses_module.get(loss)
            if loss_weights is not None and not isinstance(loss_weights, numbers.Real):
                raise ConfigError(f"`loss_weights` expects a number for a single-output model, received "
                                  f"{describe(loss_weights)}.")
            self.loss_weights = loss_weights
            if metrics is not None and not isinstance(metrics, (list, tuple)):
                metrics = [metrics]
            if weighted_metrics is not None and not isinstance(weighted_metrics, (list, tuple)):
                weighted_metrics = [weighted_metrics]
            self.metrics_identifiers = list(metrics or [])
            self.weighted_metrics_identifiers = list(weighted_metrics or [])
            for identifier in self.metrics_identifiers + self.weighted_metrics_identifiers:  # fail early
                metrics_module.get(identifier, loss=self.compiled_loss, output_shape=(None, 2))
            self._reset_compiled_metrics()
        if precision is not None:
            self.precision = distributed.check_precision(precision)
        if device is not None:
            self.set_device(device)
        if self.built and self.optimizer is not None:
            if self.optimizer.built and not self.optimizer.built_for(self.trainable_parameters()):
                # An instance reused after the model changed: its state belongs to other weights.
                self.optimizer = type(self.optimizer).from_config(self.optimizer.get_config())
            self.build_optimizer()

    def build_optimizer(self) -> None:
        """Attach the compiled optimizer to the trainable weights, or say to recompile if they changed."""
        params = self.trainable_parameters()
        if self.optimizer.built and not self.optimizer.built_for(params):
            raise ConfigError(
                f"{type(self).__name__} '{self.name}': its trainable weights changed since compile() "
                "(a layer was added or popped, or a layer's `trainable` flag changed). Call "
                "model.compile(...) again before training.")
        self.optimizer.build(params)

    def resolve_loss(self, y) -> None:
        """Make ``loss='crossentropy'`` the cross-entropy Keras picks for targets ``y`` and this output.

        Binary for one output unit, sparse for one label per sample, categorical otherwise
        (``losses.Crossentropy.resolve``); 'accuracy' is then resolved again to match.
        """
        if isinstance(self.compiled_loss, losses_module.Crossentropy):
            shape = getattr(y, "shape", None)
            self.compiled_loss = self.compiled_loss.resolve(np.shape(y) if shape is None else shape,
                                                            self.output_shape)
            had_metrics = bool(self.compiled_metrics)
            self._reset_compiled_metrics()
            if had_metrics:
                self.compile_metrics()

    def _reset_compiled_metrics(self) -> None:
        self.compiled_metrics = []

    def _compile_outputs(self, loss, loss_weights, metrics) -> None:
        """compile() for several outputs: Keras's per-output losses, loss_weights and metrics."""
        keys = self.output_names
        weights = [None] * len(keys) if loss_weights is None else \
            functional.per_output(loss_weights, keys, "loss_weights")
        shapes = [t.sample_shape for t in self._graph.outputs]
        losses = functional.per_output(loss, keys, "loss")
        self.loss = loss  # what was passed, as Keras keeps it
        self.compiled_loss = functional.MultiOutputLoss(losses, weights, shapes, keys)
        self.loss_weights = None  # inside the loss, per output
        self.metrics_identifiers = []
        self.weighted_metrics_identifiers = []
        self.output_metrics_identifiers = functional.metrics_per_output(metrics or [], keys)
        self.compiled_metrics = functional.output_metrics(self.output_metrics_identifiers, self.compiled_loss,
                                                          keys)

    def compile_metrics(self) -> None:
        """Resolve metric identifiers once the output shape is known ('accuracy' depends on it)."""
        weighted = self.weighted_metrics_identifiers
        if self.compiled_metrics or not (self.metrics_identifiers or weighted):
            return
        resolved, counts = [], {}

        def unique(name: str) -> str:  # Keras's rule: a repeated name gets _1, _2, ...
            counts[name] = counts.get(name, 0) + 1
            return name if counts[name] == 1 else f"{name}_{counts[name] - 1}"

        for identifier in self.metrics_identifiers:
            metric = metrics_module.get(identifier, loss=self.compiled_loss, output_shape=self.output_shape)
            resolved.append((unique(identifier if isinstance(identifier, str) else metric.name), metric))
        for identifier in weighted:
            metric = metrics_module.get(identifier, loss=self.compiled_loss, output_shape=self.output_shape)
            metric.weighted = True
            name = identifier if isinstance(identifier, str) else metric.name
            resolved.append((unique(f"weighted_{name}" if name in counts else name), metric))
        self.compiled_metrics = resolved

    @property
    def metrics(self) -> list:
        """The compiled metrics as ``Metric`` objects, once the model is built ([] before).

        Their state is that of the last epoch, validation or ``evaluate``. Keras lists its loss
        tracker first; trainwell's loop tracks the loss itself (``metrics_names`` starts with it).
        """
        if not self.built:
            return []
        self.compile_metrics()
        return [metric for _, metric in self.compiled_metrics]

    @property
    def metrics_names(self) -> list[str]:
        self.compile_metrics()
        return ["loss"] + [name for name, _ in self.compiled_metrics]

    # -- training API ---------------------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None, sample_weight=None,
            initial_epoch=0, steps_per_epoch=None, validation_steps=None, validation_batch_size=None,
            validation_freq=1, diagnostics="auto", device=None, strategy=None, precision=None):
        """Train the model for ``epochs`` passes over the data.

        Args:
            x: Inputs of shape (n_samples, n_features): numpy, pandas, torch or lists; or batched
                data whose batches carry the targets (then ``y`` and ``sample_weight`` stay None):
                a ``trainwell.utils.PyDataset`` (``Sequence``), a torch ``Dataset`` or
                ``DataLoader``, or a generator yielding ``(x, y)`` / ``(x, y, sample_weight)``.
            y: Targets: (n_samples,) or (n_samples, units); one-hot for categorical_crossentropy.
            batch_size: Samples per gradient update. Defaults to 32.
            epochs: Number of epochs (the final epoch index, counting from ``initial_epoch``).
            verbose: 'auto' (=1), 0 silent, 1 progress bar (one line per epoch in a log),
                2 one line per epoch.
            callbacks: List of ``trainwell.callbacks`` instances (EarlyStopping, ModelCheckpoint, ...).
            validation_split: Fraction in [0, 1) held out from the *end* of the data, before shuffling.
            validation_data: ``(x_val, y_val)`` used instead of ``validation_split``.
            shuffle: Shuffle the training rows each epoch.
            class_weight: Dict class index → weight.
            sample_weight: Array of per-sample weights.
            initial_epoch: Epoch at which to start (to continue a previous run).
            steps_per_epoch: Batches per epoch; the next epoch carries on from where this one
                stopped (Keras's meaning). Default: one pass over the data (a generator: until
                it is used up). A source that runs out ends the epoch early, with Keras's warning.
            validation_steps: Validation batches per validation (each starts from the beginning).
            diagnostics: 'auto' (cheap sampled checks), 'full', or 'off': the training doctor.
            device: 'auto', 'cpu', 'cuda', 'cuda:N'; None keeps the model's device. The data is moved
                to it once per fit, not per batch.
            strategy: None (one process) or 'ddp': when the script is started with
                ``torchrun --nproc_per_node=N`` (on one or several machines), every process trains on
                its shard and DistributedDataParallel averages the gradients (gloo on CPUs, nccl on
                GPUs, each process on GPU ``LOCAL_RANK``). ``batch_size`` is per process, as in
                PyTorch's DDP: the global batch is ``batch_size * world_size``. Each epoch's rows are
                interleaved as ``DistributedSampler`` does (rank r takes rows r, r+N, ...; padded by
                repeating a few rows so every rank runs the same number of steps), so with
                ``shuffle=False`` one global batch holds the rows of one single-process batch of
                ``batch_size * N``. Loss, metrics and validation are reduced over all processes once
                per epoch; only rank 0 prints, writes checkpoints and CSV logs, and ``model.save`` writes
                on rank 0 only; a stop asked by any rank (EarlyStopping) stops all at the epoch's end.
                Run with plain ``python``, the same script trains in its one process. A lost worker
                raises ``DistributedError`` (collective timeout: ``TRAINWELL_DIST_TIMEOUT`` seconds).
            precision: None keeps the compiled precision; '32-true' or 'bf16-mixed' (see ``compile``).

        Returns:
            A ``History``: ``history.history`` maps 'loss', metrics and 'val_*' to per-epoch lists.
        """
        return training.fit(self, x, y, batch_size=batch_size, epochs=epochs, verbose=verbose,
                            callbacks=callbacks, validation_split=validation_split,
                            validation_data=validation_data, shuffle=shuffle, class_weight=class_weight,
                            sample_weight=sample_weight, initial_epoch=initial_epoch,
                            steps_per_epoch=steps_per_epoch, validation_steps=validation_steps,
                            validation_batch_size=validation_batch_size, validation_freq=validation_freq,
                            diagnostics=diagnostics, device=device, strategy=strategy, precision=precision,
                            doctor=diagnostics_module.monitor_for_fit)

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None, steps=None,
                 callbacks=None, return_dict=False):
        """Loss (and metrics) on ``(x, y)``: a float when there are no metrics, else ``[loss, *metrics]``.

        ``x`` may be batched data as in ``fit`` (then ``y`` is None); ``steps`` evaluates only that
        many batches.
        """
        return training.evaluate(self, x, y, batch_size=batch_size, verbose=verbose,
                                 sample_weight=sample_weight, steps=steps, callbacks=callbacks,
                                 return_dict=return_dict)

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None) -> np.ndarray:
        """Outputs for ``x`` as a numpy array of shape (n_samples, units) (a list or dict of arrays,
        one per output, for a model of several outputs).

        ``x`` may be batched data as in ``fit`` (batches ``x`` or tuples starting with x); ``steps``
        predicts only that many batches.
        """
        out = training.predict(self, x, batch_size, verbose, steps, callbacks)  # positional: ~1 µs
        return out if self._out_packing is None else self.unpack_outputs(out)

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None, return_dict=False):
        """One gradient update on one batch; returns that batch's loss (and metrics)."""
        if self.optimizer is None:
            training.fit(self, x, y)  # raises the not-compiled error
        x_t = training.prepare_x(self, x, "x", self.device)
        self.compile_metrics()
        y_t = training.prepare_y(self, y, "y", self.device)
        w_t = training.prepare_weights(x_t.shape[0], sample_weight, class_weight, y_t, self.device)
        self.build_optimizer()
        if not self.training:  # train() walks every module
            self.train()
        ctx, step = self._batch_steps.get(self, weighted=w_t is not None)
        acc = training.EpochAccumulator(ctx.metrics, self.device)
        acc.add(step(ctx, self.optimizer, x_t, y_t, w_t), x_t.shape[0])
        self._batch_steps.stepped(self, weighted=w_t is not None)
        return self._batch_result(acc.results(), return_dict)

    def test_on_batch(self, x, y=None, sample_weight=None, return_dict=False):
        """Loss (and metrics) of one batch, without updating the weights."""
        logs = self.evaluate(x, y, batch_size=max(len(x), 1), verbose=0, sample_weight=sample_weight,
                             return_dict=True)
        return self._batch_result(logs, return_dict)

    def predict_on_batch(self, x) -> np.ndarray:
        return self.predict(x, verbose=0)

    # -- the training doctor --------------------------------------------------------------
    def diagnose(self, x, y, epochs: int = 3, batch_size=None, validation_split: float = 0.0,
                 validation_data=None, verbose="auto") -> list:
        """A short probe run with full diagnostics; the weights and optimizer state are restored after.

        Args:
            x, y: training data, as for ``fit``.
            epochs: epochs of the probe run. Defaults to 3.
            batch_size, validation_split, validation_data: as for ``fit``.
            verbose: 'auto'/1 prints the findings (or that there are none); 0 is silent.

        Returns:
            A list of ``trainwell.diagnostics.Finding`` (errors and warnings first).

        Example:
            >>> model.diagnose(X, y)
            Training doctor: 1 problem found (details in history.diagnosis)
              WARNING unscaled_inputs: Input features are on very different or large scales: ...
        """
        return diagnostics_module.diagnose(self, x, y, epochs=epochs, batch_size=batch_size,
                                          validation_split=validation_split, validation_data=validation_data,
                                          verbose=0 if verbose == 0 else 1)

    def repair(self, x, y, findings=None, epochs=None, batch_size=None, validation_split: float = 0.2,
               validation_data=None, seed: int = 0, verbose="auto"):
        """Prove the doctor's fixes: train fresh copies with each fix, then all of them, and compare.

        Copies are built from this model's config (its own weights are not touched), trained with
        the same seed, validation rows and epoch budget: one unchanged, one per root finding with
        its fix, one with every fix.

        Args:
            x, y: the data, as for ``fit``.
            findings: the findings to repair; None: those of the last ``fit`` (``history.diagnosis``).
            epochs: the epoch budget; None: that of the last ``fit`` (20 when there was none).
            batch_size, validation_split, validation_data: as for ``fit`` (the split defaults to 0.2).
            seed: the seed of every copy.
            verbose: 'auto'/1 prints the table; 0 is silent.

        Returns:
            A ``trainwell.diagnostics.RepairResult``: ``table``, ``rows``, ``best_model``, ``best_fix``.

        Example:
            >>> history = model.fit(X, y, validation_split=0.3, epochs=20)
            >>> result = model.repair(X, y, validation_split=0.3)
            >>> result.best_model.save("repaired.tw")
        """
        from .diagnostics import repair

        return repair(self, x, y, findings=findings, epochs=epochs, batch_size=batch_size,
                      validation_split=validation_split, validation_data=validation_data, seed=seed,
                      verbose=0 if verbose == 0 else 1)

    def find_learning_rate(self, x, y, min_lr: float = 1e-7, max_lr: float = 10.0, steps: int = 100,
                           batch_size=None):
        """Learning-rate range test: ``steps`` mini-batches at rates growing from ``min_lr`` to ``max_lr``.

        The weights and the optimizer's state are restored afterwards.

        Args:
            x, y: training data, as for ``fit``.
            min_lr, max_lr: the range of learning rates tried (exponentially spaced).
            steps: number of rates (one mini-batch each). Defaults to 100.
            batch_size: rows per step. Defaults to 32.

        Returns:
            A ``trainwell.diagnostics.LRFinderResult`` with ``learning_rates``, ``losses``,
            ``suggestion`` and ``plot(path=None)``.

        Example:
            >>> result = model.find_learning_rate(X, y)
            >>> model.compile(optimizer=Adam(learning_rate=result.suggestion), loss='mse')
        """
        if self.optimizer is None:
            training.fit(self, x, y)  # raises the not-compiled error
        x_t = training.prepare_x(self, x, "x", self.device)
        y_t = training.prepare_y(self, y, "y", self.device)
        training.check_lengths(x_t, y_t)
        return diagnostics_module.find_learning_rate(
            self, x_t, y_t, min_lr=min_lr, max_lr=max_lr, steps=steps,
            batch_size=32 if batch_size is None else batch_size)

    @staticmethod
    def _batch_result(logs: dict, return_dict: bool):
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    # -- weights ----------------------------------------------------------------------------
    def get_weights(self) -> list[np.ndarray]:
        return [w for layer in self._stack for w in layer.get_weights()]

    def set_weights(self, weights) -> None:
        weights = list(weights)
        expected = sum(len(layer.weights) for layer in self._stack)
        if len(weights) != expected:
            raise ConfigError(f"set_weights: model '{self.name}' has {expected} weight arrays, received "
                              f"{len(weights)}.")
        i = 0
        for layer in self._stack:
            k = len(layer.weights)
            layer.set_weights(weights[i:i + k])
            i += k

    @property
    def weights(self) -> list[torch.Tensor]:
        return [w for layer in self._stack for w in layer.weights]

    @property
    def trainable_weights(self) -> list[torch.Tensor]:
        return [w for layer in self._stack for w in layer.trainable_weights]

    @property
    def non_trainable_weights(self) -> list[torch.Tensor]:
        return [w for layer in self._stack for w in layer.non_trainable_weights]

    def count_params(self) -> int:
        if not self.built:
            raise ConfigError(f"{type(self).__name__} '{self.name}' is not built yet, so it has no "
                              "parameters to count. Give the first layer an input_shape or call "
                              "build(input_shape).")
        return sum(layer.count_params() for layer in self._stack)

    # -- summary ----------------------------------------------------------------------------
    def _summary_rows(self) -> list:
        """``([name (type), output shape, params, connected to], layer)`` per row, Input rows first."""
        rows = [([f"{t.node.layer.name} (InputLayer)", str(t.shape), "0", "-"], None)
                for t in self._graph.inputs]
        links = self._graph.connections()
        for node in self._graph.nodes:
            layer = node.layer
            rows.append(([f"{layer.name} ({type(layer).__name__})", str(node.output.shape),
                          f"{layer.count_params():,}", links[id(node)]], layer))
        return rows

    def summary(self, line_length=None, positions=None, print_fn=None, expand_nested=False,
                show_trainable=False, layer_range=None) -> None:
        """Print a table of layers, output shapes and parameter counts, as Keras does."""
        from rich import box
        from rich.console import Console
        from rich.table import Table

        table = Table(box=box.HEAVY_HEAD, show_lines=False, title_justify="left")
        table.add_column("Layer (type)")
        table.add_column("Output Shape")
        table.add_column("Param #", justify="right")
        rows = self._summary_rows()
        if any(len(cells) == 4 for cells, _ in rows):
            table.add_column("Connected to")
        if show_trainable:
            table.add_column("Trainable")
        for row, layer in rows:
            flag = ["Y" if layer is None or layer.trainable else "N"] if show_trainable else []
            table.add_row(*row, *flag)
        trainable = sum(w.numel() for w in self.trainable_weights)
        frozen = sum(w.numel() for w in self.non_trainable_weights)
        buf = io.StringIO()
        width = line_length or (80 if self._graph is None else 110)  # room for "Connected to"
        console = Console(file=buf, width=width, force_terminal=False, color_system=None)
        console.print(f'Model: "{self.name}"')
        console.print(table)
        total = trainable + frozen
        console.print(f" Total params: {total:,} ({_size(total)})")
        console.print(f" Trainable params: {trainable:,} ({_size(trainable)})")
        console.print(f" Non-trainable params: {frozen:,} ({_size(frozen)})")
        (print_fn or print)(buf.getvalue().rstrip("\n"))

    # -- config and files ---------------------------------------------------------------------
    def get_config(self) -> dict:
        return {"name": self.name, "trainable": self._trainable, **self._graph.get_config()}

    @classmethod
    def from_config(cls, config: dict) -> Model:
        inputs, outputs = functional.Graph.from_config(config)
        return cls(inputs, outputs, name=config.get("name"), trainable=config.get("trainable", True))

    def to_json(self, **kwargs) -> str:
        """The architecture (no weights) as Keras's JSON, which Keras's and trainwell's
        ``model_from_json`` read back; ``kwargs`` go to ``json.dumps``."""
        return keras_files.model_to_json(self.get_config(), **kwargs)

    def save(self, filepath, overwrite: bool = True) -> None:
        """Write the model (architecture, weights, optimizer state, history, preprocessing) to one file.

        The suffix picks the format: ``.keras`` writes a Keras 3 archive and ``.h5`` Keras's legacy
        HDF5 file (both open in Keras; neither keeps the history, the CSV preprocessing or the
        random state); anything else, ``.tw`` suggested, trainwell's own file, which keeps everything.
        In a distributed run only rank 0 writes (the ranks hold the same weights); the others return.
        """
        if not distributed.is_main_process():
            return
        saving.save_model(self, filepath, overwrite=overwrite)

    def export(self, filepath, format: str = "onnx", verbose=None, input_signature=None, *,
               preprocessing: bool = True) -> str:
        """Write the model for other runtimes: ``format='onnx'`` (Keras's spelling; the only format).

        Traced by ``torch.onnx`` at opset ``trainwell.export.OPSET`` with a dynamic batch axis; input
        ``input``, output ``output``. A model trained from a table (``trainwell train``) takes the raw
        columns and carries its preprocessing in the graph unless ``preprocessing=False`` (see
        ``trainwell.export``). Needs the ``onnx`` extra.

        Raises:
            ConfigError: another format, an ``input_signature`` (the shape comes from the model),
                or a model that is not built.

        Example:
            >>> model.export("model.onnx")
        """
        from ._errors import unknown_name
        from .export import export_onnx

        if format != "onnx":
            raise unknown_name("export format", format, ("onnx",), argument="format")
        if input_signature is not None:
            raise ConfigError("export: `input_signature` is not supported: the input shape comes from the "
                              "model itself (batch axis dynamic). Remove the argument.")
        path = export_onnx(self, filepath, preprocessing=preprocessing)
        if verbose:
            print(f"Saved the model as ONNX to {path}")
        return path

    def save_weights(self, filepath, overwrite: bool = True) -> None:
        """Write the weights alone (on rank 0 only in a distributed run): ``.weights.h5`` in Keras 3's
        layout, another ``.h5`` in Keras's legacy one, anything else as a ``.safetensors`` file."""
        if not distributed.is_main_process():
            return
        saving.save_weights(self, filepath, overwrite=overwrite)

    def load_weights(self, filepath) -> None:
        """Copy weights from a trainwell weights or model file, or a Keras ``.weights.h5``, ``.h5``
        or ``.keras`` file (told apart by content)."""
        saving.load_weights(self, filepath)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r} layers={[layer.name for layer in self._stack]}>"


class Sequential(Model):
    """A linear stack of layers: a ``Model`` whose graph is a chain, built as layers are added.

    Args:
        layers: Optional list of layers; an ``Input(shape=...)`` first declares the sample shape.
        name: Model name.

    Example:
        >>> model = Sequential()
        >>> model.add(Dense(50, activation='relu', input_shape=(9,)))
        >>> model.add(Dense(1))
        >>> model.compile(optimizer='adam', loss='mean_squared_error')
        >>> model.fit(X, y, validation_split=0.3, epochs=20)
    """

    def __init__(self, layers=None, name: str | None = None, trainable: bool = True):
        self._init_state(name, "sequential")
        for layer in layers or []:
            self.add(layer)
        if not trainable:
            self.trainable = False

    # -- structure --------------------------------------------------------------------------
    @property
    def layers(self) -> list[Layer]:
        """The layers, without the ``Input`` (as in Keras)."""
        return list(self._stack)

    is_chain = True

    def add(self, layer: Layer) -> None:
        """Append a layer. An ``Input`` or ``input_shape=`` on the first layer fixes the sample shape."""
        if isinstance(layer, KerasTensor) and isinstance(layer.node.layer, InputLayer):
            layer = layer.node.layer  # Input(shape=...) first in the list, as in Keras
        if isinstance(layer, InputLayer):
            if self._stack:
                raise ConfigError(f"Input(shape={layer.shape}) must come first in Sequential '{self.name}'.")
            self._input_shape = layer.shape
            return
        if not isinstance(layer, Layer):
            raise ConfigTypeError(f"Sequential.add expects a trainwell layer (e.g. Dense(10)), received "
                                  f"{describe(layer)}.")
        if any(existing is layer or existing.name == layer.name for existing in self._stack):
            raise ConfigError(f"Sequential '{self.name}' already has a layer named '{layer.name}'; "
                              "layer names must be unique.")
        if not self._stack and self._input_shape is None and layer.input_shape_arg is not None:
            self._input_shape = layer.input_shape_arg
        self._stack.append(layer)
        self._version += 1
        # With a known input shape every added layer is built at once, as in Keras (checking
        # `self.built` here was wrong: the new, unbuilt layer makes it False, so only the first
        # layer got weights and get_weights/summary/count_params saw a part of the model).
        if self._input_shape is not None:
            self._build_layers()

    def pop(self) -> Layer:
        """Remove and return the last layer."""
        if not self._stack:
            raise ConfigError(f"Sequential '{self.name}' has no layers to pop.")
        layer = self._stack[-1]
        del self._stack[-1]
        self._version += 1
        self._reset_compiled_metrics()
        return layer

    # -- building ---------------------------------------------------------------------------
    @property
    def built(self) -> bool:
        return bool(self._stack) and all(layer.built for layer in self._stack)

    @property
    def input_shape_hint(self) -> tuple[int, ...] | None:
        return self._input_shape

    @property
    def input_shape(self):
        return None if self._input_shape is None else (None, *self._input_shape)

    @property
    def output_shape(self):
        shape = self._input_shape
        if shape is None:
            return None
        for layer in self._stack:
            shape = layer.compute_output_shape(shape)
        return (None, *shape)

    def build(self, input_shape=None) -> None:
        """Create all weights for samples of ``input_shape`` (with or without the batch axis)."""
        if input_shape is not None:
            shape = tuple(input_shape)
            if shape and shape[0] is None:
                shape = shape[1:]
            self._input_shape = layers_module._as_shape(shape, "input_shape")
        if self._input_shape is None:
            raise ConfigError(f"Sequential '{self.name}' cannot be built: the input shape is unknown. Pass "
                              "input_shape=(n_features,) to the first layer, start with Input(shape=...), "
                              "or call fit/predict on data.")
        self._build_layers()

    def ensure_built(self, sample_shape: tuple[int, ...]) -> None:
        if not self._stack:
            raise ConfigError(f"Sequential '{self.name}' has no layers: add some with model.add(Dense(...)).")
        if self._input_shape is None:
            self._input_shape = tuple(int(s) for s in sample_shape)
        if not self.built:
            self._build_layers()

    def _build_layers(self) -> None:
        shape = self._input_shape
        for layer in self._stack:
            layer.check_input_shape(shape)
            if not layer.built:
                layer.build(shape)
            shape = layer.compute_output_shape(shape)
        self.to(self.device)
        self._version += 1
    # -- forward ----------------------------------------------------------------------------
    def call(self, x: torch.Tensor, final_activation: bool = True) -> torch.Tensor:
        """Forward pass; ``final_activation=False`` returns the last Dense layer's pre-activation."""
        last = len(self._stack) - 1
        for i, layer in enumerate(self._stack):
            x = layer.linear(x) if (i == last and not final_activation) else layer(x)
        return x

    def _summary_rows(self) -> list:
        rows = []
        shape = self._input_shape
        for layer in self._stack:
            shape = layer.compute_output_shape(shape) if shape is not None else None
            out = "?" if shape is None else str((None, *shape))
            params = f"{layer.count_params():,}" if layer.built else "0 (unbuilt)"
            rows.append(([f"{layer.name} ({type(layer).__name__})", out, params], layer))
        return rows

    @property
    def inputs(self):
        return None if self._input_shape is None else [_sequential_input(self)]

    @property
    def outputs(self):
        return None

    @property
    def output_names(self) -> list[str]:
        return [self._stack[-1].name] if self._stack else []

    def pack_inputs(self, x, name: str, device):
        return None

    # -- config -------------------------------------------------------------------------------
    def get_config(self) -> dict:
        return {"name": self.name,
                "input_shape": None if self._input_shape is None else list(self._input_shape),
                "layers": [layers_module.serialize(layer) for layer in self._stack]}

    @classmethod
    def from_config(cls, config: dict) -> Sequential:
        model = cls(name=config.get("name"))
        if config.get("input_shape"):
            model._input_shape = tuple(config["input_shape"])
        for layer_config in config.get("layers", []):
            model._stack.append(layers_module.deserialize(layer_config))
        if model._input_shape is not None:
            model._build_layers()
        return model

def _sequential_input(model: Sequential) -> KerasTensor:
    return InputLayer(shape=model._input_shape, name=f"{model.name}_input").output_tensor()


def _size(n_params: int) -> str:
    b = n_params * 4
    for unit in ("B", "KB", "MB", "GB"):
        if b < 1024 or unit == "GB":
            return f"{b:.2f} {unit}" if unit != "B" else f"{b} B"
        b /= 1024
    return f"{b:.2f} GB"


def model_from_json(json_string, custom_objects=None) -> Model:
    """A model from Keras's ``model.to_json()`` text (architecture only, new weights).

    The JSON is read as data against the allow-list of ``trainwell.keras_files``; nothing in it is run.

    Raises:
        ModelFileError: invalid JSON, or a layer or object trainwell does not read (the message names it).
        ConfigError: ``custom_objects`` is not empty.
    """
    if custom_objects:
        raise ConfigError("model_from_json: `custom_objects` is not supported: trainwell runs no code from a "
                          "model description. Remove the argument.")
    config = keras_files.model_config_from_json(json_string)
    return (Model if "input_layers" in config else Sequential).from_config(config)


def load_model(filepath, custom_objects=None, compile: bool = True, safe_mode: bool = True) -> Sequential:
    """Load a model written by ``model.save``: ready to predict, evaluate and continue training.

    Keras files open too: ``.keras`` archives and legacy ``.h5`` files (Keras 2, tf.keras, Keras 3),
    told apart by content; their weights, compile settings and optimizer state are carried over, and
    nothing from them is run (see ``trainwell.keras_files`` for what is read and what is refused).

    Args:
        filepath: a file written by ``model.save``, or a Keras model file.
        custom_objects: Keras's argument, accepted for compatibility; must be empty, because
            trainwell model files hold no code (custom functions cannot be stored).
        compile: restore the compile settings and optimizer state.
        safe_mode: Keras's argument; trainwell loading is always safe (no pickle, no code).

    Raises:
        ModelFileError: the file is damaged or incompatible (see ``saving.read_model_file``).
        ConfigError: ``custom_objects`` is not empty.

    Example:
        >>> model = load_model("model.tw")
    """
    if custom_objects:
        raise ConfigError("load_model: `custom_objects` is not supported: trainwell model files hold "
                          "no code, so they never need custom objects. Remove the argument.")
    saved = saving.read_model_file(filepath, compile=compile)  # every check, before anything is built
    with saving.file_errors(saved.path):
        with torch.random.fork_rng(devices=[]):  # building draws initial weights: leave the caller's stream
            model = (Model if saved.class_name == "Functional" else Sequential).from_config(saved.config)
        saving.restore_model(model, saved, compile=compile)
        history = saving.saved_history(saved)
        if history is not None:
            model.history = History()
            model.history.history, model.history.epoch = history["history"], history["epoch"]
    return model
