"""Bit-level fingerprint of the engines: criteria, gradients and solutions at fixed θ.

Run before and after a refactoring of ``lmeformula/pls`` that must not change the arithmetic;
the two outputs must be identical (every number is written with ``float.hex``)::

    python tools/engine_fingerprint.py > before.json
    ... edit ...
    python tools/engine_fingerprint.py > after.json && cmp before.json after.json

Every model is factored by the blocked engine (on each of its downdate paths that applies:
pairs grouped by equal blocks, a dense G, sparse products) and, where the system is small
enough, by the dense engine (quadratic form and products by term).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.models import crossed, synthetic
from lmeformula import lFormula
from lmeformula.datasets import load
from lmeformula.pls import engine
from lmeformula.pls import policy as pls_policy
from lmeformula.pls.terms import term_shapes

MODELS: list[tuple[str, str, str]] = [
    ("sleepstudy", "sleepstudy", "Reaction ~ Days + (Days | Subject)"),
    ("sleepstudy_uncorr", "sleepstudy", "Reaction ~ Days + (Days || Subject)"),
    ("penicillin", "Penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)"),
    ("pastes", "Pastes", "strength ~ 1 + (1 | batch/cask)"),
    ("verbagg", "VerbAgg",
     'as.numeric(r2 == "Y") ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)'),
    ("insteval", "InstEval", "y ~ service + (1 | s) + (1 | d) + (1 | dept:service)"),
    ("insteval_large", "InstEval",
     "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept) + (0 + service | dept)"),
    ("crossed_vector", "synthetic:20000", "y ~ x + (x | subj) + (1 | item)"),
    ("crossed_vector2", "synthetic:20000", "y ~ x + (1 | item) + (x | subj)"),
    ("dense_crossed", "crossed:60000:300:80", "y ~ x + (x | subj) + (1 | item)"),
    ("vector_second", "synthetic:5000", "y ~ x + (1 | subj) + (x | item)"),
]


def _data(spec: str) -> Any:
    if spec.startswith("synthetic:"):
        return synthetic(int(spec.split(":")[1]))
    if spec.startswith("crossed:"):
        n, ns, ni = (int(v) for v in spec.split(":")[1:])
        return crossed(n, ns, ni)
    return load(spec)


def _thetas(theta0: np.ndarray, lower: np.ndarray) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(12)
    yield theta0
    for _ in range(3):
        th = rng.normal(size=theta0.shape[0]) * 0.8
        th[lower == 0] = np.abs(th[lower == 0]) + 0.05
        yield th
    th = theta0.copy()
    th[np.flatnonzero(lower == 0)[-1]] = 0.0  # a boundary
    yield th


def _hex(a: Any) -> list[str] | str:
    arr = np.asarray(a, dtype=float).ravel()
    if arr.shape[0] > 64:  # long vectors: a few entries and exact sums of chunks
        return [float(v).hex() for v in arr[:8]] + [float(v).hex() for v in arr[-8:]] + [
            float(np.sum(arr)).hex(), float(np.dot(arr, np.arange(arr.shape[0]))).hex()]
    return [float(v).hex() for v in arr]


def _record(problem: Any, thetas: list[np.ndarray]) -> list[dict[str, Any]]:
    out = []
    for th in thetas:
        row: dict[str, Any] = {}
        for reml in (True, False):
            dev, f = problem.deviance(th, reml)
            if f is None:  # the criterion alone, from block 2's sparse factor: the dense
                f = problem.factor(th)  # factorisation's criterion is recorded as always
                row["sparse_REML" if reml else "sparse_ML"] = float(dev).hex()
                dev = problem.criterion(f, reml)
            row["REML" if reml else "ML"] = float(dev).hex()
            if problem.has_gradient:
                try:
                    row[f"grad_{reml}"] = _hex(problem.gradient(f, reml))
                except np.linalg.LinAlgError as err:
                    row[f"grad_{reml}"] = str(err)
        beta, u = problem.solve(f)
        row["beta"], row["u"] = _hex(beta), _hex(u)
        row["batch"] = _hex(problem.deviances(np.array(thetas[:2]), True))
        out.append(row)
    return out


def main() -> None:
    pick = set(sys.argv[1:])
    result: dict[str, Any] = {}
    for name, data, formula in MODELS:
        if pick and name not in pick:
            continue
        pf = lFormula(formula, _data(data))
        re = pf.reTrms
        shapes = term_shapes(re.terms)
        factors = re.level_factors()
        y = np.asarray(pf.y, dtype=float)
        X = pf.X_values
        thetas = list(_thetas(re.theta, re.lower))
        base = pls_policy.POLICY
        # (label, dense engine, count per level, policy): each path of each engine
        variants = [("blocked", False, True,  # pairs
                     replace(base, dense_g_fill=2.0, dense_g_work=0)),
                    ("blocked_sparse", False, False, base),
                    ("blocked_denseG", False, True, replace(base, dense_g_fill=0.0))]
        if re.Zt.shape[0] + X.shape[1] + 1 <= 600:
            variants += [("dense", True, False, base),
                         ("dense_products", True, False, replace(base, max_quadratic=0))]
        result[name] = {}
        for label, dense, by_level, policy in variants:
            pls_policy.POLICY = policy
            try:
                problem: Any
                if dense:
                    problem = engine.DensePLSProblem(re.Zt, X, y, None, shapes)
                else:
                    problem = engine.PLSProblem(re.Zt, X, y, None, shapes,
                                                factors if by_level else None)
                result[name][label] = _record(problem, thetas)
                w = np.linspace(0.5, 1.5, y.shape[0])
                problem.reweight(w, y * 0.9)
                result[name][label + "_reweighted"] = _record(problem, thetas[:2])
            finally:
                pls_policy.POLICY = base
        print(name, file=sys.stderr)
    json.dump(result, sys.stdout, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
