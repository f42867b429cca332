"""The functional API's graph: ``Model(inputs, outputs)`` built from ``Input`` and layer calls.

``Input(shape=...)`` gives a symbolic tensor; calling a layer on symbolic tensors records a node
(``layers.node``). ``Graph`` walks back from the outputs once, orders the nodes (depth first, so
every node comes after the nodes it reads) and turns them into a flat plan of slot indices, so a
forward pass is one loop over ``(layer, input slots, output slot)`` with no per-step lookups.

Several inputs or outputs travel through the training loop as one 2-D tensor: each array is
flattened and the arrays are concatenated along the features (``Packing``). The loop's slicing,
shuffling, splitting and sharding then work unchanged; the graph unpacks the inputs (views, no
copies) and ``MultiOutputLoss`` unpacks targets and outputs, per output, with Keras's per-output
losses, ``loss_weights`` and metrics.
"""

from __future__ import annotations

import math

import torch

from . import losses as losses_module
from . import metrics as metrics_module
from ._errors import ConfigError, ConfigTypeError, DataError, describe
from .data import as_tensor
from .layers import InputLayer, deserialize, serialize
from .layers.node import KerasTensor, Node


def _structure(value, what: str) -> tuple[list[KerasTensor], list[str] | None]:
    """The tensors of ``inputs``/``outputs`` (one, a list, or a dict) and the dict's keys, if any."""
    keys = None
    if isinstance(value, dict):
        keys = [str(k) for k in value]
        value = list(value.values())
    elif isinstance(value, KerasTensor):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value \
            or not all(isinstance(v, KerasTensor) for v in value):
        raise ConfigTypeError(f"Model: `{what}` expects the symbolic tensors of Input(...) and layer calls "
                              f"(one, a list or a dict), received {describe(value)}.")
    return list(value), keys


class Graph:
    """The nodes between ``inputs`` and ``outputs``, in an order that runs them."""

    def __init__(self, inputs, outputs):
        self.inputs, self.input_keys = _structure(inputs, "inputs")
        self.outputs, self.output_keys = _structure(outputs, "outputs")
        for t in self.inputs:
            if not isinstance(t.node.layer, InputLayer):
                raise ConfigError(f"Model: every one of `inputs` must come from Input(...); {t.name!r} is "
                                  "the "
                                  f"output of layer '{t.node.layer.name}'.")
        self.nodes = self._order()
        self.layers = list(dict.fromkeys(node.layer for node in self.nodes))
        names = [layer.name for layer in self.layers] + [t.node.layer.name for t in self.inputs]
        duplicate = next((n for n in names if names.count(n) > 1), None)
        if duplicate is not None:
            raise ConfigError(f"Model: two different layers are named {duplicate!r}; layer names must be "
                              "unique within a model.")
        slots = {id(t): i for i, t in enumerate(self.inputs)}
        self.plan = []
        for node in self.nodes:
            slots[id(node.output)] = len(slots)
            self.plan.append((node.layer, [slots[id(t)] for t in node.inputs], node.single,
                              slots[id(node.output)]))
        self.output_slots = [slots[id(t)] for t in self.outputs]
        self.n_slots = len(slots)
        # The same plan with the single output layer's activation left out (fused into the loss).
        last = self.nodes[-1] if self.nodes else None
        self.linear_plan = None
        if len(self.outputs) == 1 and last is not None and last.output is self.outputs[0] \
                and hasattr(last.layer, "linear"):
            self.linear_plan = self.plan[:-1] + [(last.layer.linear, *self.plan[-1][1:])]

    def _order(self) -> list[Node]:
        """Depth-first post-order from the outputs: each node after the nodes it reads."""
        known_inputs = {id(t) for t in self.inputs}
        order, done, active = [], set(), set()

        def visit(tensor: KerasTensor, path: str) -> None:
            node = tensor.node
            if id(tensor) in known_inputs or id(node) in done:
                return
            if isinstance(node.layer, InputLayer):
                raise ConfigError(f"Model: the outputs depend on Input {node.layer.name!r} "
                                  f"{node.layer.shape}, "
                                  f"which is not among `inputs` (via {path}). Add it to Model(inputs=...).")
            if id(node) in active:
                raise ConfigError(f"Model: the graph has a cycle at layer '{node.layer.name}'.")
            active.add(id(node))
            for t in node.inputs:
                visit(t, f"{node.layer.name} <- {path}")
            active.discard(id(node))
            done.add(id(node))
            order.append(node)

        for t in self.outputs:
            visit(t, t.node.layer.name)
        return order

    def run(self, xs: list[torch.Tensor], final_activation: bool = True, visit=None) -> list[torch.Tensor]:
        """The output tensors for input tensors ``xs`` (in ``inputs`` order).

        ``visit(layer, inputs) -> output``, when given, runs each layer instead (the training
        doctor's probe reads pre-activations and gradients per layer that way).
        """
        values = list(xs) + [None] * (self.n_slots - len(xs))
        for fn, ins, single, out in (self.plan if final_activation or self.linear_plan is None
                                     else self.linear_plan):
            args = values[ins[0]] if single else [values[i] for i in ins]
            values[out] = fn(args) if visit is None else visit(self._layer_of(fn), args)
        return [values[i] for i in self.output_slots]

    def _layer_of(self, fn):
        return getattr(fn, "__self__", fn)  # a bound `linear` of the fused plan, or the layer

    # -- summary ----------------------------------------------------------------------------------
    def connections(self) -> dict[int, str]:
        """``id(node)`` → Keras's "Connected to" text, e.g. ``dense[0][0], input_layer[0][0]``."""
        index = self._node_indices()
        text = {}
        for node in self.nodes:
            text[id(node)] = ", ".join(f"{t.node.layer.name}[{index.get(id(t.node), 0)}][0]"
                                       for t in node.inputs)
        return text

    def _node_indices(self) -> dict[int, int]:
        """Each node's index among its layer's calls within this graph (Keras's node_index)."""
        count: dict[int, int] = {}
        index = {}
        for node in self.nodes:
            index[id(node)] = count.get(id(node.layer), 0)
            count[id(node.layer)] = index[id(node)] + 1
        return index

    # -- config -----------------------------------------------------------------------------------
    def get_config(self) -> dict:
        """Keras's functional config: layers with their inbound nodes, input and output layers."""
        index = self._node_indices()

        def ref(t: KerasTensor) -> list:
            return [t.node.layer.name, index.get(id(t.node), 0), 0]

        entries = [{**serialize(t.node.layer), "name": t.node.layer.name, "inbound_nodes": []}
                   for t in self.inputs]
        for layer in self.layers:
            calls = [node for node in self.nodes if node.layer is layer]
            entries.append({**serialize(layer), "name": layer.name,
                            "inbound_nodes": [[ref(t) + [{}] for t in node.inputs] for node in calls]})

        def refs(tensors, keys):
            items = [ref(t) for t in tensors]
            return dict(zip(keys, items)) if keys is not None else items

        return {"layers": entries, "input_layers": refs(self.inputs, self.input_keys),
                "output_layers": refs(self.outputs, self.output_keys)}

    @staticmethod
    def from_config(config: dict) -> tuple:
        """``(inputs, outputs)`` rebuilt from ``get_config``'s dict, in the same structure."""
        tensors: dict[tuple[str, int], KerasTensor] = {}
        pending = []
        for entry in config.get("layers", []):
            layer = deserialize(entry)
            if isinstance(layer, InputLayer):
                tensors[(layer.name, 0)] = layer.output_tensor()
            else:
                pending += [(layer, i, inbound) for i, inbound in enumerate(entry.get("inbound_nodes", []))]
        while pending:  # a shared layer's later calls may read tensors of layers listed after it
            waiting = []
            for layer, i, inbound in pending:
                keys = [(str(r[0]), int(r[1])) for r in inbound]
                if all(k in tensors for k in keys):
                    args = [tensors[k] for k in keys]
                    tensors[(layer.name, i)] = layer(args[0] if len(args) == 1 else args)
                else:
                    waiting.append((layer, i, inbound))
            if len(waiting) == len(pending):
                missing = waiting[0][0].name
                raise ConfigError(f"Model config: layer '{missing}' reads tensors that no layer makes.")
            pending = waiting

        def pick(refs):
            if isinstance(refs, dict):
                return {k: tensors[(str(r[0]), int(r[1]))] for k, r in refs.items()}
            return [tensors[(str(r[0]), int(r[1]))] for r in refs]

        return pick(config["input_layers"]), pick(config["output_layers"])


# -------------------------------------------------------------------------------------------------
# several arrays as one tensor


class Packing:
    """Lay several arrays of per-sample ``shapes`` side by side in one ``(n, total)`` tensor."""

    def __init__(self, shapes: list[tuple[int, ...]]):
        self.shapes = [tuple(s) for s in shapes]
        sizes = [math.prod(s) for s in self.shapes]
        self.bounds = [(sum(sizes[:i]), sum(sizes[:i + 1])) for i in range(len(sizes))]
        self.width = sum(sizes)

    def pack(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([t.reshape(t.shape[0], -1) for t in tensors], dim=1)

    def unpack(self, packed: torch.Tensor) -> list[torch.Tensor]:
        n = packed.shape[0]
        return [packed[:, a:b].reshape(n, *shape) for (a, b), shape in zip(self.bounds, self.shapes)]


def by_position(data, keys: list[str] | None, count: int, what: str) -> list:
    """The arrays of a multi-input/output ``data`` (list or dict) in the model's order."""
    if isinstance(data, dict):
        if keys is None:
            raise DataError(f"`{what}` is a dict, but the model's {count} tensors were given as a list to "
                            "Model(...): pass a list in the same order.")
        missing = [k for k in keys if k not in data]
        if missing:
            raise DataError(f"`{what}` has no entry for {missing} (expected keys {keys}, received "
                            f"{sorted(map(str, data))}).")
        return [data[k] for k in keys]
    if not isinstance(data, (list, tuple)) or len(data) != count:
        raise DataError(f"`{what}` expects {count} arrays (a list, in the order of the model's tensors"
                        f"{', or a dict keyed ' + str(keys) if keys else ''}), received {describe(data)}.")
    return list(data)


def pack_arrays(data, keys, names: list[str], shapes, what: str, device) -> torch.Tensor:
    """Check each array's sample shape against the model's, then pack them into one tensor."""
    arrays = by_position(data, keys, len(shapes), what)
    tensors = []
    for i, (array, name, shape) in enumerate(zip(arrays, names, shapes)):
        label = f"{what}[{keys[i]!r}]" if keys else f"{what}[{i}]"
        t = as_tensor(array, label, device=device)
        if t.dim() == 1 and shape == (1,):
            t = t.unsqueeze(1)
        if tuple(t.shape[1:]) != tuple(shape):
            raise DataError(f"Input '{name}' expects samples of shape {tuple(shape)}, but `{label}` has "
                            f"shape {tuple(t.shape[1:])} per sample.")
        tensors.append(t)
    lengths = {t.shape[0] for t in tensors}
    if len(lengths) != 1:
        raise DataError(f"The arrays of `{what}` have different numbers of samples: "
                        f"{[t.shape[0] for t in tensors]}.")
    return Packing(shapes).pack(tensors)


# -------------------------------------------------------------------------------------------------
# per-output losses and metrics


def per_output(value, keys: list[str], what: str) -> list:
    """A compile argument for each output: one value for all, a list in order, or a dict by name."""
    if isinstance(value, dict):
        unknown = [k for k in value if k not in keys]
        if unknown:
            raise ConfigError(f"compile: `{what}` names {unknown}, which are not outputs of this model "
                              f"(outputs: {keys}).")
        return [value.get(k) for k in keys]
    if isinstance(value, (list, tuple)):
        if len(value) != len(keys):
            raise ConfigError(f"compile: `{what}` has {len(value)} entries for {len(keys)} outputs {keys}; "
                              "give one per output, or a dict by output name.")
        return list(value)
    return [value] * len(keys)


class MultiOutputLoss:
    """The weighted sum of one loss per output, on packed targets and outputs (see ``Packing``).

    Args:
        losses: one loss per output (None: that output is not trained).
        weights: one multiplier per output (Keras's ``loss_weights``); None means 1.
        output_shapes: the outputs' sample shapes.
        names: the outputs' names (their layers' names, or the dict keys).
    """

    from_logits = True  # never fused with an output activation
    reduction = "sum_over_batch_size"

    def __init__(self, losses: list, weights: list, output_shapes: list, names: list[str]):
        self.losses = [None if loss is None else losses_module.get(loss) for loss in losses]
        self.weights = [1.0 if w is None else float(w) for w in weights]
        self.names = names
        self.outputs = Packing(output_shapes)
        self.targets: Packing | None = None  # set by pack_targets (sparse labels are narrower)
        self.name = "multi_output_loss"

    def pack_targets(self, y, what: str, keys, prepare_one) -> torch.Tensor:
        """Each output's targets through ``prepare_one(loss, units, name, y_i, label)``, then packed."""
        arrays = by_position(y, keys, len(self.names), what)
        tensors = []
        for i, (array, loss, shape, name) in enumerate(zip(arrays, self.losses, self.outputs.shapes,
                                                           self.names)):
            label = f"{what}[{keys[i]!r}]" if keys else f"{what}[{i}]"
            t = prepare_one(loss or losses_module.get("mse"), shape[-1], name, array, label)
            tensors.append(t.float().reshape(t.shape[0], -1))
        if len({t.shape[0] for t in tensors}) != 1:
            raise DataError(f"The arrays of `{what}` have different numbers of samples: "
                            f"{[t.shape[0] for t in tensors]}.")
        self.targets = Packing([tuple(t.shape[1:]) for t in tensors])
        return self.targets.pack(tensors)

    def split(self, y: torch.Tensor, out: torch.Tensor):
        ys = self.targets.unpack(y)
        ys = [yi[:, 0].long() if losses_module.kind(loss) == "sparse" else yi
              for yi, loss in zip(ys, self.losses)]
        return ys, self.outputs.unpack(out)

    def __call__(self, y: torch.Tensor, out: torch.Tensor, sample_weight=None) -> torch.Tensor:
        ys, outs = self.split(y, out)
        total = None
        for loss, weight, yi, oi in zip(self.losses, self.weights, ys, outs):
            if loss is None:
                continue
            term = loss(yi, oi, sample_weight)
            term = term * weight if weight != 1.0 else term
            total = term if total is None else total + term
        return total if total is not None else out.sum() * 0.0


class OutputMetric:
    """A metric of one output of a multi-output model, reading its slice of the packed tensors."""

    weighted = False  # Keras's `metrics` ignore sample weights

    def __init__(self, metric, loss: MultiOutputLoss, index: int):
        self.metric, self.loss, self.index = metric, loss, index
        self.name = metric.name

    def update_state(self, y, pred, sample_weight=None):
        ys, outs = self.loss.split(y, pred)
        self.metric.update_state(ys[self.index], outs[self.index], sample_weight)

    def result(self):
        return self.metric.result()

    def reset_state(self):
        self.metric.reset_state()


class OutputLoss:
    """One output's unweighted loss, averaged over the epoch's samples: Keras's ``<output>_loss`` log."""

    weighted = True  # a loss: the sample weights apply, as in the total loss

    def __init__(self, loss: MultiOutputLoss, index: int):
        self.loss, self.index = loss, index
        self.name = f"{loss.names[index]}_loss"
        self.total = self.count = None

    def update_state(self, y, pred, sample_weight=None):
        ys, outs = self.loss.split(y, pred)
        value = self.loss.losses[self.index](ys[self.index], outs[self.index], sample_weight).detach()
        n = y.shape[0]
        self.total = value * n if self.total is None else self.total + value * n
        self.count = n if self.count is None else self.count + n

    def result(self):
        return self.total / self.count

    def reset_state(self):
        self.total = self.count = None


def metrics_per_output(identifiers, keys: list[str]) -> list[list]:
    """Keras's ``metrics`` for several outputs: a dict by output name, a list of lists in output
    order, or one flat list applied to every output."""
    nested = isinstance(identifiers, dict) or (isinstance(identifiers, (list, tuple)) and identifiers and all(
        isinstance(i, (list, tuple)) or i is None for i in identifiers))
    per = per_output(identifiers, keys, "metrics") if nested else [identifiers] * len(keys)
    return [[] if w is None else list(w) if isinstance(w, (list, tuple)) else [w] for w in per]


def output_metrics(per: list[list], loss: MultiOutputLoss, keys: list[str]) -> list[tuple[str, OutputMetric]]:
    """``(name, metric)`` pairs: each output's loss (``<output>_loss``), then its metrics named
    ``<output>_<metric>``, as Keras logs them."""
    resolved = [(f"{key}_loss", OutputLoss(loss, i)) for i, key in enumerate(keys)
                if loss.losses[i] is not None]
    for i, (key, wanted) in enumerate(zip(keys, per)):
        for identifier in wanted:
            metric = metrics_module.get(identifier, loss=loss.losses[i],
                                        output_shape=(None, *loss.outputs.shapes[i]))
            name = identifier if isinstance(identifier, str) else metric.name
            resolved.append((f"{key}_{name}", OutputMetric(metric, loss, i)))
    return resolved
