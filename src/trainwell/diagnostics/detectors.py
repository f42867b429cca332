"""The detectors: one small function per finding code, each reading a ``RunRecord``.

A detector takes the record and returns a list of ``Finding`` (empty when all is well). They run
in the order of ``DETECTORS``; a later detector can see what earlier ones found
(``record.has(code)``), which is how "without other explanation" is written. To add one::

    @detector
    def my_check(record):
        return [Finding("my_code", "warning", None, {...}, "what is wrong", "what to do")]

``run_detectors`` calls each inside ``try``: a detector that fails becomes an 'info' finding.

The detectors live in three modules, by what they read: ``data_checks`` (the model, the loss and
the data, before training), ``network_checks`` (the probes) and ``training_checks`` (the curves).
Their thresholds are module constants, named and explained, so that tests and users can read them.
"""

from __future__ import annotations

# Import order is run order: static checks, then the network's internals, then the curves, so that
# later detectors can tell whether an earlier finding already explains what they see.
from .data_checks import loss_output_mismatch, unscaled_inputs, unscaled_target
from .network_checks import dead_units, exploding_gradients, vanishing_gradients
from .registry import DETECTORS, detector, run_detectors
from .training_checks import lr_too_high, lr_too_low, overfitting, stalled, underfitting

__all__ = [
    "DETECTORS",
    "dead_units",
    "detector",
    "exploding_gradients",
    "loss_output_mismatch",
    "lr_too_high",
    "lr_too_low",
    "overfitting",
    "run_detectors",
    "stalled",
    "underfitting",
    "unscaled_inputs",
    "unscaled_target",
    "vanishing_gradients",
]
