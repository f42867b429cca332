"""Tests for trainwell.diagnostics.causes: the root cause first, consequences marked ``caused_by``."""

from __future__ import annotations

from trainwell.diagnostics import Finding, format_findings
from trainwell.diagnostics.causes import link_causes


def finding(code, severity="warning", layer=None, **evidence) -> Finding:
    return Finding(code, severity, layer, evidence, f"{code} message.", f"{code} fix.")


def test_unscaled_target_is_the_root_of_gradients_dead_units_and_jumps():
    found = link_causes([
        finding("dead_units", "error", "dense", died_during_training=5),
        finding("exploding_gradients", at_start=True),
        finding("lr_too_high"),
        finding("unscaled_target"),
    ])
    assert [f.code for f in found] == ["unscaled_target", "dead_units", "exploding_gradients", "lr_too_high"]
    assert found[0].caused_by is None and {f.caused_by for f in found[1:]} == {"unscaled_target"}
    assert found[0].severity == "error"  # the root of an error is an error


def test_an_explosion_from_the_initialisation_causes_the_nan_loss_not_the_reverse():
    found = link_causes([finding("lr_too_high", "error"), finding("exploding_gradients", at_start=True)])
    assert [(f.code, f.caused_by) for f in found] == [
        ("exploding_gradients", None), ("lr_too_high", "exploding_gradients")]
    later = link_causes([finding("exploding_gradients", at_start=False), finding("lr_too_high")])
    assert [(f.code, f.caused_by) for f in later] == [
        ("lr_too_high", None), ("exploding_gradients", "lr_too_high")]


def test_chains_resolve_to_the_first_root():
    # unscaled inputs -> too high a rate -> dead units: both consequences point at the inputs.
    found = link_causes([
        finding("dead_units", layer="dense", died_during_training=3),
        finding("lr_too_high"),
        finding("unscaled_inputs"),
    ])
    assert found[0].code == "unscaled_inputs"
    assert all(f.caused_by == "unscaled_inputs" for f in found[1:])


def test_dead_units_from_the_start_are_not_blamed_on_the_rate():
    found = link_causes([finding("lr_too_high"), finding("dead_units", layer="d", died_during_training=0)])
    assert all(f.caused_by is None for f in found)


def test_unrelated_findings_stay_roots_in_severity_order_and_info_comes_last():
    found = link_causes([
        finding("stalled", "info"), finding("overfitting"), finding("loss_output_mismatch", "error"),
    ])
    assert [f.code for f in found] == ["loss_output_mismatch", "overfitting", "stalled"]
    assert all(f.caused_by is None for f in found)


def test_printed_summary_puts_consequences_under_their_root():
    text = format_findings(link_causes([finding("lr_too_high"), finding("unscaled_target")]))
    lines = text.splitlines()
    assert lines[1].startswith("  WARNING unscaled_target")
    assert lines[3].startswith("    <- caused by unscaled_target: WARNING lr_too_high")
    assert "once unscaled_target is fixed" in lines[4]
    assert str(link_causes([finding("lr_too_high"), finding("unscaled_target")])[1]).startswith(
        "[warning] lr_too_high (caused by unscaled_target)")


def test_caused_by_is_in_the_finding_data():
    found = link_causes([finding("lr_too_high"), finding("unscaled_inputs")])
    assert found[1].to_dict()["caused_by"] == "unscaled_inputs"
