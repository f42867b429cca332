"""``repair``: try the doctor's fixes and show which ones work.

A sick model's findings each name the changes that fix them (``Finding.repairs``). ``repair``
builds fresh copies of the model from its config, applies one finding's changes to each copy
(root causes only: a consequence goes away with its root), then all of them together, and trains
every copy, the unchanged one included, with the same seed, the same validation rows and the
same epoch budget. The table says, per finding, what was changed, the validation loss and score
before and after, and whether the finding is gone; the best copy is returned ready to use.

The changes (``fixes.REPAIRS``) act on a ``fixes.Recipe`` (layer configs, optimizer config, loss,
metrics, callbacks, target scaling) so that each stays a small function. Nothing here imports
``models``: copies are made with ``type(model).from_config``.
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from .. import losses as losses_module
from .. import optimizers as optimizers_module
from .._errors import ConfigError, check_positive_int, unknown_name
from .fixes import REPAIRS, Recipe, describe_changes

# ----------------------------------------------------------------------------------------------
# training one copy


def recipe_of(model) -> Recipe:
    """The ``Recipe`` of a compiled model (its config, optimizer settings, loss and metrics)."""
    if model.optimizer is None or model.loss is None:
        raise ConfigError("repair() needs a compiled model: call model.compile(optimizer=..., loss=...) "
                          "first.")
    return Recipe(
        config=copy.deepcopy(model.get_config()),
        optimizer=copy.deepcopy(optimizers_module.serialize(model.optimizer)),
        loss=losses_module.serialize(model.loss),
        metrics=[m for m in model.metrics_identifiers if isinstance(m, str)],
    )


@dataclass
class Trial:
    """One trained copy: its findings, validation loss and score, and the model."""

    model: object
    findings: list
    val_loss: float
    score: float


def _build(original, recipe: Recipe, x, seed: int):
    from ..utils import set_random_seed

    set_random_seed(seed)
    config = recipe.config
    if recipe.normalize is not None:
        norm = {"name": "repair_normalization"}
        if recipe.normalize == "pixels":  # x/255: a fixed scale, safe for pixels constant in training
            norm.update(mean=0.0, variance=255.0**2)
        config = {**config, "layers": [{"class_name": "Normalization", "config": norm}, *config["layers"]]}
    model = type(original).from_config(config)
    _copy_adapted_state(original, model)
    if recipe.normalize == "adapt":
        first = model.layers[0]
        first.adapt(x)
        with torch.no_grad():
            # A constant column would get a std of ~0 and blow up on new rows: give it 1.
            first.variance[first.variance < 1e-12] = 1.0
    model.compile(optimizer=copy.deepcopy(recipe.optimizer), loss=recipe.loss, metrics=list(recipe.metrics))
    return model


def _copy_adapted_state(original, model) -> None:
    """Normalization statistics are state, not config: copy them from the original by layer name."""
    by_name = {layer.name: layer for layer in original.layers}
    for layer in model.layers:
        source = by_name.get(layer.name)
        if source is not None and type(layer).__name__ == "Normalization" and source.built:
            if not layer.built:
                layer.build((None, source.mean.numel()))
            layer.load_state_dict(source.state_dict())


def _fold_target_scale(model, scale) -> bool:
    """Undo a standardised target inside a linear output layer: W·s, b·s + m. False when impossible."""
    last = model.layers[-1]
    if scale is None or getattr(last, "activation_name", None) != "linear" or last.kernel is None:
        return False
    mean, std = scale
    with torch.no_grad():
        last.kernel.mul_(std)
        if last.bias is not None:
            last.bias.mul_(std).add_(mean)
    return True


def _score(model, x_val, y_val, classes: bool) -> float:
    """Validation error rate (classes) or mean squared error in the target's units; inf if not finite."""
    pred = np.asarray(model.predict(x_val, verbose=0), dtype=np.float64)
    if not np.all(np.isfinite(pred)):
        return math.inf
    t = np.asarray(y_val, dtype=np.float64).reshape(len(pred), -1)
    if not classes:
        return float(np.mean((pred.reshape(t.shape) - t) ** 2)) if pred.size == t.size else math.inf
    if t.shape[1] > 1:
        truth = t.argmax(1)
    else:
        truth = t[:, 0].astype(np.int64)
    guess = pred.argmax(1) if pred.shape[1] > 1 else (pred[:, 0] > 0.5).astype(np.int64)
    return float(np.mean(guess != truth))


def _train(original, recipe, data, fit_args, seed):
    x, y, x_val, y_val, classes = data
    model = _build(original, recipe, x, seed)
    y_fit, val_fit = y, y_val
    if recipe.target_scale is not None:
        mean, std = recipe.target_scale
        y_fit, val_fit = (np.asarray(y) - mean) / std, (np.asarray(y_val) - mean) / std
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a sick copy may warn about NaN losses, by design
        history = model.fit(
            x, y_fit, validation_data=(x_val, val_fit), verbose=0,
            callbacks=[make() for make in recipe.callbacks], **fit_args,
        )
    if recipe.target_scale is not None and not _fold_target_scale(model, recipe.target_scale):
        return None
    findings = [f for f in getattr(history, "diagnosis", []) if f.is_problem]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        val_loss = model.evaluate(x_val, y_val, verbose=0)
    val_loss = float(val_loss[0] if isinstance(val_loss, (list, tuple)) else val_loss)
    return Trial(model, findings, val_loss, _score(model, x_val, y_val, classes))


# ----------------------------------------------------------------------------------------------
# the table


@dataclass
class RepairResult:
    """What ``repair`` found: one row per finding and change tried, and the best model.

    Attributes:
        rows: dicts with ``finding``, ``caused_by``, ``fix``, ``val_loss_before``, ``val_loss_after``,
            ``score_before``, ``score_after``, ``gone`` (the finding no longer reported),
            ``still_found`` (what the doctor still reports after that fix). A finding's row shows
            the best of its alternative fixes; then come 'all fixes together' (each finding's first
            choice) and 'then what remained' (the best copy's changes plus the fixes of what it
            still showed), when tried.
        score_name: 'val_error' (classification error rate) or 'val_mse' (in the target's units).
        best_model: the copy with the lowest validation score (the unchanged copy if no fix helped).
        best_fix: the changes of ``best_model`` in words ('' for the unchanged copy).
        baseline: the unchanged copy's ``Trial``.
    """

    rows: list[dict]
    score_name: str
    best_model: object
    best_fix: str
    baseline: Trial

    @property
    def table(self) -> str:
        """The rows as a text table."""
        head = ["finding", "fix applied", "val_loss", self.score_name, "gone?", "still found"]
        lines = [head]
        for r in self.rows:
            name = r["finding"] + (f" (caused by {r['caused_by']})" if r["caused_by"] else "")
            lines.append([
                name, r["fix"], f"{_g(r['val_loss_before'])} -> {_g(r['val_loss_after'])}",
                f"{_g(r['score_before'])} -> {_g(r['score_after'])}", "yes" if r["gone"] else "no",
                "-" if r["still_found"] is None else ", ".join(r["still_found"]) or "nothing",
            ])
        widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
        text = ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines]
        text.insert(1, "  ".join("-" * w for w in widths))
        best = f"best: {self.best_fix}" if self.best_fix else "best: the unchanged model (no fix helped)"
        return "\n".join(text + [best])

    def __str__(self) -> str:
        return self.table


def _g(value: float) -> str:
    return f"{value:.4g}" if math.isfinite(value) else str(value)


# ----------------------------------------------------------------------------------------------
# repair


def repair(
    model,
    x,
    y,
    findings=None,
    epochs=None,
    batch_size=None,
    validation_split: float = 0.2,
    validation_data=None,
    seed: int = 0,
    verbose=1,
) -> RepairResult:
    """Train fresh copies of ``model`` with each suggested fix, then all of them, and compare.

    Args:
        model: a compiled ``Sequential`` (trained or not).
        x: inputs of shape (n_samples, n_features).
        y: targets, as for ``fit``.
        findings: the findings to repair; None: those of the model's last ``fit``
            (``model.history.diagnosis``), or a fit of an unchanged copy when it has none.
        epochs: the epoch budget of every copy; None: the epochs of the model's last fit (else 20).
        batch_size: as for ``fit`` (32 when None).
        validation_split: the last fraction of the rows held out (as in ``fit``) when
            ``validation_data`` is None.
        validation_data: ``(x_val, y_val)`` to score every copy on.
        seed: the seed of every copy's initial weights and shuffles.
        verbose: 1 prints the table; 0 is silent.

    Returns:
        A ``RepairResult`` (``rows``, ``table``, ``best_model``, ``best_fix``).

    Raises:
        ConfigError: the model is not compiled, or a finding names an unknown repair.

    Example:
        >>> result = model.repair(X, y)        # doctest: +SKIP
        >>> print(result.table)                # doctest: +SKIP
        >>> result.best_model.save("fixed.tw")  # doctest: +SKIP
    """
    from ..data import validation_slice

    seed = int(seed)
    history = getattr(model, "history", None)
    if epochs is None:
        epochs = int((getattr(history, "params", None) or {}).get("epochs") or 20)
    epochs = check_positive_int(epochs, "epochs", "repair()")
    x, y = np.asarray(x, dtype=np.float32), np.asarray(y)
    if validation_data is not None:
        x_val, y_val = np.asarray(validation_data[0], dtype=np.float32), np.asarray(validation_data[1])
    else:
        cut = validation_slice(len(x), validation_split)
        x, x_val, y, y_val = x[:cut], x[cut:], y[:cut], y[cut:]
    classes = losses_module.kind(model.loss) != "regression"
    data = (x, y, x_val, y_val, classes)
    fit_args = {"epochs": epochs, "batch_size": batch_size or 32}
    base_recipe = recipe_of(model)
    baseline = _train(model, base_recipe, data, fit_args, seed)
    if findings is None:
        findings = list(getattr(history, "diagnosis", None) or baseline.findings)
    problems = [f for f in findings if f.is_problem]
    for f in problems:
        for name in f.repairs:
            if name not in REPAIRS:
                raise unknown_name("repair", name, REPAIRS, argument=f"Finding {f.code!r}.repairs")
    # A finding's repairs are alternatives (its fix's "or"s): each distinct one is tried alone, then
    # every finding's first choice together, then, if the best copy still shows findings, that
    # copy's changes plus their first choices (the doctor's second look, as a user would do).
    tried = {(name,): _try(model, base_recipe, (name,), data, fit_args, seed)
             for name in dict.fromkeys(name for f in problems for name in f.repairs)}
    rows = [_row(f, _best_of(tried, f), baseline) for f in problems]
    firsts = tuple(dict.fromkeys(f.repairs[0] for f in problems if f.repairs))
    if len(firsts) > 1:
        tried[firsts] = _try(model, base_recipe, firsts, data, fit_args, seed)
        rows.append(_row(None, tried[firsts], baseline, "all fixes together"))
    names, (_, trial) = min(tried.items(), key=lambda item: _rank(item[1][1]), default=((), (None, None)))
    more = tuple(dict.fromkeys(f.repairs[0] for f in (trial.findings if trial else []) if f.repairs))
    if more and not set(more) <= set(names):
        then = tuple(dict.fromkeys(names + more))
        tried[then] = _try(model, base_recipe, then, data, fit_args, seed)
        rows.append(_row(None, tried[then], baseline, "then what remained"))
    best = min(
        [("", baseline)] + [(words, trial) for words, trial in tried.values() if trial is not None],
        key=lambda pair: pair[1].score,
    )  # the lowest validation score wins, healthy or not: the table says what each still shows
    result = RepairResult(rows, "val_error" if classes else "val_mse", best[1].model, best[0], baseline)
    if verbose:
        print(result.table)
    return result


def _try(model, base: Recipe, names, data, fit_args, seed):
    recipe = copy.deepcopy(base)
    recipe.callbacks = list(base.callbacks)
    for name in names:
        REPAIRS[name][1](recipe, data[0], data[1])
    return describe_changes(names, recipe), _train(model, recipe, data, fit_args, seed)


def _rank(trial) -> tuple:
    """Order of preference among trained copies: healthy first, then the lower validation score."""
    return (1, math.inf) if trial is None else (bool(trial.findings), trial.score)


def _best_of(tried: dict, finding):
    """The best of a finding's alternatives: ``(words, trial)``, or None when it names no repair."""
    options = [tried[(name,)] for name in finding.repairs]
    return min(options, key=lambda option: _rank(option[1]), default=None)


def _row(finding, tried, baseline: Trial, label: str = "") -> dict:
    """One table row: a finding and the best of its fixes (or, for ``finding=None``, a combination)."""
    words, trial = tried if tried is not None else ("(no repair for this finding)", None)
    left = None if trial is None else sorted({_named(g) for g in trial.findings})
    if finding is None:
        gone = left == []
    else:
        gone = left is not None and not any(g.code == finding.code for g in trial.findings)
    return {
        "finding": label if finding is None else _named(finding),
        "caused_by": None if finding is None else finding.caused_by,
        "fix": words,
        "val_loss_before": baseline.val_loss,
        "val_loss_after": trial.val_loss if trial is not None else math.nan,
        "score_before": baseline.score,
        "score_after": trial.score if trial is not None else math.nan,
        "gone": gone,
        "still_found": left,
    }


def _named(f) -> str:
    return f"{f.code} [{f.layer}]" if f.layer else f.code
