"""Symbolic tensors and the nodes that record the functional API's graph.

``Input(shape=...)`` returns a ``KerasTensor``: a shape (batch axis first, as ``None``) and the
``Node`` that made it. Calling a layer on KerasTensors builds the layer for their shapes and
records a new Node (the layer and its input tensors); ``trainwell.functional`` walks these nodes
back from a model's outputs. No data flows here: only shapes.
"""

from __future__ import annotations


class Node:
    """One call of ``layer`` on ``inputs`` (KerasTensors); ``outputs`` is the KerasTensor it made."""

    def __init__(self, layer, inputs: list, single: bool):
        self.layer = layer
        self.inputs = list(inputs)
        self.single = single  # called on one tensor rather than on a list (merge layers)
        self.output = None


class KerasTensor:
    """A symbolic tensor of the functional API.

    Attributes:
        shape: ``(None, *sample_shape)``, as Keras shows it.
        node: the Node (layer call) that produced it.
    """

    def __init__(self, sample_shape: tuple, node: Node, name: str):
        self.sample_shape = tuple(sample_shape)
        self.node = node
        self.name = name

    @property
    def shape(self) -> tuple:
        return (None, *self.sample_shape)

    @property
    def ndim(self) -> int:
        return len(self.sample_shape) + 1

    def __repr__(self) -> str:
        return f"<KerasTensor shape={self.shape} name={self.name!r}>"


def is_symbolic(value) -> bool:
    """Whether ``value`` is a KerasTensor or a non-empty list/tuple of them."""
    if type(value) is KerasTensor:
        return True
    return type(value) in (list, tuple) and bool(value) and all(type(v) is KerasTensor for v in value)


def call_symbolic(layer, inputs) -> KerasTensor:
    """Build ``layer`` for the inputs' shapes and record the call as a Node."""
    single = type(inputs) is KerasTensor
    tensors = [inputs] if single else list(inputs)
    shapes = tensors[0].sample_shape if single else [t.sample_shape for t in tensors]
    layer.check_input_shape(shapes)
    if not layer.built:
        layer.build(shapes)
    node = Node(layer, tensors, single)
    node.output = KerasTensor(layer.compute_output_shape(shapes), node, layer.name)
    return node.output
