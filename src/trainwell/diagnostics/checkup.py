"""``diagnose``: a short training run under full monitoring, on borrowed weights.

It answers "is this model and data set up sensibly?" before a long fit: a few epochs are enough
for the static checks (loss/output mismatch, unscaled inputs), dead or saturated units,
vanishing or exploding gradients and a learning rate that is far off. Checks that need a long
run (overfitting, stalls) stay silent. The weights, optimizer state and counters are restored.
"""

from __future__ import annotations

import numpy as np

from .._errors import check_positive_int
from .findings import format_findings
from .state import capture, restore


def diagnose(
    model,
    x,
    y,
    epochs: int = 3,
    batch_size=None,
    validation_split: float = 0.0,
    validation_data=None,
    verbose=1,
) -> list:
    """Train a copy of the weights for a few epochs with diagnostics='full' and report the findings.

    Args:
        model: a compiled ``Sequential``.
        x: inputs of shape (n_samples, n_features).
        y: targets, as for ``fit``.
        epochs: epochs of the probe run. Defaults to 3.
        batch_size: as for ``fit`` (32 when None).
        validation_split, validation_data: as for ``fit``.
        verbose: 1 prints the summary (or a line saying nothing was found); 0 is silent.

    Returns:
        The list of ``Finding`` (warnings and errors first).

    Raises:
        ConfigError, DataError, NotCompiledError: as ``fit`` does for bad arguments or data.

    Example:
        >>> findings = model.diagnose(X, y)
        >>> [f.code for f in findings]
        ['unscaled_inputs']
    """
    epochs = check_positive_int(epochs, "epochs", "diagnose()")
    if not model.built and model.layers:
        # Build now, so the weights restored afterwards are the fresh ones a first fit would start from.
        model.ensure_built(tuple(np.shape(x)[1:]) or (1,))
    saved = capture(model)
    try:
        history = model.fit(
            x,
            y,
            epochs=epochs,
            batch_size=batch_size,
            verbose=0,
            diagnostics="full",
            validation_split=validation_split,
            validation_data=validation_data,
        )
        findings = list(getattr(history, "diagnosis", []) or [])
    finally:
        restore(model, saved)
    if verbose:
        quiet = f"Training doctor: no problem found in a {epochs}-epoch probe run."
        print(format_findings(findings) or quiet)
    return findings
