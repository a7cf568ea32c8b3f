"""Progress bars (off by default, tqdm or a plain counter on stderr) and the parallel
bootstrap: the same replicates for the same seed whatever n_jobs is."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest

import lmeformula as lmf
import lmeformula.parallel as parallel
from lmeformula.cli import main

SS = lmf.datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def fm1() -> lmf.LmerMod:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lmf.lmer("Reaction ~ Days + (Days | Subject)", SS)


def fixef_only(m: lmf.LmerMod) -> np.ndarray:
    return m.fixef.to_numpy()


@pytest.mark.slow
def test_parallel_bootstrap_gives_the_same_replicates(fm1: lmf.LmerMod) -> None:
    one = lmf.bootstrap(fm1, nsim=12, rng=42)
    two = lmf.bootstrap(fm1, nsim=12, rng=42, n_jobs=2)
    np.testing.assert_array_equal(one.to_numpy(), two.to_numpy())
    assert list(one.columns) == list(two.columns)
    assert not np.isnan(one.to_numpy()).any()
    # another seed, other replicates
    other = lmf.bootstrap(fm1, nsim=12, rng=43, n_jobs=2)
    assert not np.allclose(one.to_numpy(), other.to_numpy())
    # a Generator is consumed the same way by both paths
    g1, g2 = np.random.default_rng(5), np.random.default_rng(5)
    np.testing.assert_array_equal(lmf.bootstrap(fm1, 6, rng=g1, FUN=fixef_only).to_numpy(),
                                  lmf.bootstrap(fm1, 6, rng=g2, FUN=fixef_only,
                                                n_jobs=3).to_numpy())
    assert g1.random() == g2.random()


@pytest.mark.slow
def test_parallel_bootstrap_with_spawned_workers(monkeypatch: pytest.MonkeyPatch,
                                                 fm1: lmf.LmerMod) -> None:
    # the start method used off Linux: the model and a module-level FUN are pickled
    monkeypatch.setattr(parallel, "_start_method", lambda: "spawn")
    ours = lmf.bootstrap(fm1, nsim=4, rng=3, FUN=fixef_only, n_jobs=2)
    np.testing.assert_array_equal(ours.to_numpy(),
                                  lmf.bootstrap(fm1, nsim=4, rng=3, FUN=fixef_only).to_numpy())


@pytest.mark.slow
def test_confint_boot_in_parallel_matches_serial(fm1: lmf.LmerMod) -> None:
    a = lmf.confint(fm1, method="boot", nsim=10, rng=9)
    b = lmf.confint(fm1, method="boot", nsim=10, rng=9, n_jobs=2)
    np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())


@pytest.mark.slow
def test_failed_refits_are_nan_rows_in_workers(fm1: lmf.LmerMod) -> None:
    slope = fm1.fixef.iloc[1]

    def sometimes(m: lmf.LmerMod) -> np.ndarray:  # a local function: fork needs no pickling
        if m.fixef.iloc[1] > slope:
            raise ArithmeticError("refused")
        return m.fixef.to_numpy()

    serial = lmf.bootstrap(fm1, nsim=8, rng=1, FUN=sometimes)
    forked = lmf.bootstrap(fm1, nsim=8, rng=1, FUN=sometimes, n_jobs=2)
    np.testing.assert_array_equal(serial.to_numpy(), forked.to_numpy())
    nan_rows = np.isnan(serial.to_numpy()).all(axis=1)
    assert 0 < nan_rows.sum() < 8


@pytest.mark.slow
def test_progress_is_off_by_default_and_on_request(capsys: pytest.CaptureFixture[str],
                                                  fm1: lmf.LmerMod) -> None:
    lmf.bootstrap(fm1, nsim=3, rng=1)
    lmf.profile(fm1, which=[".sigma"])
    assert capsys.readouterr().err == ""
    lmf.bootstrap(fm1, nsim=3, rng=1, progress=True)
    err = capsys.readouterr().err
    assert "bootstrap:" in err and "/3" in err
    lmf.profile(fm1, which=[".sigma", "Days"], progress=True)
    assert "profile:" in capsys.readouterr().err
    lmf.allFit(fm1, optimizers=["Powell", "nloptwrap.NLOPT_LN_BOBYQA"], progress=True)
    assert "allFit" in capsys.readouterr().err
    out = capsys.readouterr().out
    assert out == ""


def test_progress_without_tqdm(monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str], fm1: lmf.LmerMod) -> None:
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # import fails
    monkeypatch.setitem(sys.modules, "tqdm", None)
    lmf.bootstrap(fm1, nsim=2, rng=1, progress=True)
    err = capsys.readouterr().err
    assert "bootstrap: 2/2" in err


@pytest.mark.slow
def test_cli_confint_progress_follows_the_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["fit", "Reaction ~ Days + (Days | Subject)", "--data", "sleepstudy",
            "--confint", "boot", "--nsim", "4", "--seed", "2"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "bootstrap" not in captured.err  # stdout is not a terminal under pytest
    assert ".sig01" in captured.out and "97.5 %" in captured.out
    assert main([*args, "--progress", "--jobs", "2"]) == 0
    captured2 = capsys.readouterr()
    assert "bootstrap" in captured2.err
    assert captured2.out == captured.out  # same seed, same intervals, any n_jobs


def test_lmer_progress_counts_evaluations_and_changes_nothing(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        fm1: lmf.LmerMod) -> None:
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # the plain counter: exact text
    monkeypatch.setitem(sys.modules, "tqdm", None)
    m = lmf.lmer("Reaction ~ Days + (Days | Subject)", SS, progress=True)
    err = capsys.readouterr().err
    assert err.rstrip().endswith(f"lmer evaluations: {m.optinfo.feval}")  # 43, as lme4
    np.testing.assert_array_equal(m.theta, fm1.theta)
    assert m.optinfo.feval == fm1.optinfo.feval
    g = lmf.lmer("Reaction ~ Days + (Days | Subject)", SS, progress=True,
                 control={"optimizer": "L-BFGS-B"})  # the gradient reaches the optimizer
    assert g.optinfo.feval < fm1.optinfo.feval
    np.testing.assert_allclose(g.theta, fm1.theta, rtol=1e-3)
