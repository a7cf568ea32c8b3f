"""HTML output (_repr_html_) of the model, its summary, VarCorr and anova: real tables whose
numbers are the model's, parsed back with the standard library's HTML parser."""

from __future__ import annotations

import warnings
from html.parser import HTMLParser

import numpy as np
import pytest

import lmeformula as lmf

SS = lmf.datasets.load("sleepstudy")


def _fit(formula: str, **kw: object) -> lmf.LmerMod:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lmf.lmer(formula, SS, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def fm1() -> lmf.LmerMod:
    return _fit("Reaction ~ Days + (Days | Subject)")


@pytest.fixture(scope="module")
def fm0() -> lmf.LmerMod:
    return _fit("Reaction ~ Days + (1 | Subject)")


@pytest.fixture(scope="module")
def ml() -> lmf.LmerMod:
    return _fit("Reaction ~ Days + (Days | Subject)", REML=False, data_name="sleep <&> study")


class Tables(HTMLParser):
    """Collects each table as its caption and rows of cell texts (header row included)."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict[str, object]] = []
        self.items: list[str] = []
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self._caption: list[str] | None = None
        self._li: list[str] | None = None
        self.depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.depth += 1
            self.tables.append({"caption": None, "rows": [],
                                "class": dict(attrs).get("class")})
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "caption":
            self._caption = []
        elif tag == "li":
            self._li = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[-1]["rows"].append(self._row)  # type: ignore[union-attr]
            self._row = None
        elif tag == "caption" and self._caption is not None:
            self.tables[-1]["caption"] = "".join(self._caption)
            self._caption = None
        elif tag == "li" and self._li is not None:
            self.items.append("".join(self._li))
            self._li = None
        elif tag == "table":
            self.depth -= 1

    def handle_data(self, data: str) -> None:
        for buf in (self._cell, self._caption, self._li):
            if buf is not None:
                buf.append(data)


def parse(text: str) -> Tables:
    p = Tables()
    p.feed(text)
    p.close()
    assert p.depth == 0  # every table closed
    return p


def table(p: Tables, caption: str) -> list[list[str]]:
    for t in p.tables:
        if t["caption"] == caption:
            return t["rows"]  # type: ignore[return-value]
    raise AssertionError(f"no table {caption!r}")


def facts(p: Tables) -> dict[str, str]:
    rows = next(t["rows"] for t in p.tables if t["class"] == "lmeformula facts")
    out = {}
    for r in rows:  # type: ignore[union-attr]
        for k in range(0, len(r), 2):
            if r[k]:
                out[r[k].rstrip(":")] = r[k + 1]
    return out


def num(x: str) -> float:
    return float(x) if x else np.nan


def test_model_html_tables_hold_the_models_numbers(fm1: lmf.LmerMod) -> None:
    p = parse(fm1._repr_html_())
    f = facts(p)
    assert f["Formula"] == "Reaction ~ Days + (Days | Subject)" and f["Method"] == "REML"
    assert int(f["No. observations"]) == 180 and int(f["No. groups (Subject)"]) == 18
    np.testing.assert_allclose(num(f["REML criterion"]), fm1.REMLcrit(), rtol=1e-6)
    np.testing.assert_allclose(num(f["Residual Std. Dev."]), fm1.sigma, rtol=1e-6)
    fe = table(p, "Fixed effects")
    assert fe[0] == ["", "Estimate", "Std. Error", "t value"]
    coefs = fm1.summary().coefficients
    assert [r[0] for r in fe[1:]] == list(coefs.index)
    np.testing.assert_allclose([[num(c) for c in r[1:]] for r in fe[1:]], coefs.to_numpy(),
                               rtol=1e-4)
    re = table(p, "Random effects")
    assert re[0] == ["Groups", "Name", "Variance", "Std.Dev.", "Corr"]
    assert [r[:2] for r in re[1:]] == [["Subject", "(Intercept)"], ["", "Days"],
                                       ["Residual", ""]]
    vc = fm1.VarCorr.as_data_frame()
    np.testing.assert_allclose([num(r[2]) for r in re[1:]], vc["vcov"].to_numpy()[[0, 1, 3]],
                               rtol=1e-4)
    np.testing.assert_allclose([num(r[3]) for r in re[1:]], vc["sdcor"].to_numpy()[[0, 1, 3]],
                               rtol=1e-4)
    np.testing.assert_allclose(num(re[2][4]), vc["sdcor"].iloc[2], rtol=1e-4)
    assert re[1][4] == "" and re[3][4] == ""
    assert "<pre>" not in fm1._repr_html_()


def test_summary_html_adds_residuals_and_correlations(fm1: lmf.LmerMod) -> None:
    p = parse(fm1.summary()._repr_html_())
    res = table(p, "Scaled residuals")
    assert res[0] == ["Min", "1Q", "Median", "3Q", "Max"]
    r = fm1.residuals(type="pearson", scaled=True).to_numpy()
    np.testing.assert_allclose([num(x) for x in res[1]],
                               np.quantile(r, [0, 0.25, 0.5, 0.75, 1]), rtol=1e-3)
    cor = table(p, "Correlation of fixed effects")
    v = fm1.vcov().to_numpy()
    assert cor[0] == ["", "(Intercept)"] and cor[1][0] == "Days"
    np.testing.assert_allclose(num(cor[1][1]), v[0, 1] / np.sqrt(v[0, 0] * v[1, 1]),
                               atol=1e-3)


def test_ml_fit_facts_and_escaping(ml: lmf.LmerMod) -> None:
    text = ml._repr_html_()
    assert "sleep &lt;&amp;&gt; study" in text and "sleep <&> study" not in text
    f = facts(parse(text))
    assert f["Data"] == "sleep <&> study" and f["Method"] == "ML"
    for key, value in (("AIC", ml.AIC()), ("BIC", ml.BIC()), ("logLik", ml.logLik().value),
                       ("deviance", ml.deviance())):
        np.testing.assert_allclose(num(f[key]), value, rtol=1e-6)
    assert int(f["df.resid"]) == ml.df_residual


def test_varcorr_and_anova_html(fm1: lmf.LmerMod, fm0: lmf.LmerMod) -> None:
    p = parse(fm0.VarCorr._repr_html_())
    rows = table(p, "Random effects")
    assert rows[0] == ["Groups", "Name", "Variance", "Std.Dev."]  # no Corr column
    np.testing.assert_allclose(num(rows[1][3]), fm0.VarCorr.terms[0].stddev[0], rtol=1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = lmf.anova(fm0, fm1)
    p = parse(a._repr_html_())
    (t,) = p.tables
    rows = t["rows"]
    assert rows[0] == ["", *a.table.columns]
    assert [r[0] for r in rows[1:]] == list(a.table.index)
    got = np.array([[num(c) for c in r[1:]] for r in rows[1:]])
    np.testing.assert_allclose(got, a.table.to_numpy(dtype=float), rtol=1e-4)
    single = parse(lmf.anova(fm1)._repr_html_()).tables[0]["rows"]
    assert single[0] == ["", "npar", "Sum Sq", "Mean Sq", "F value"]


def test_messages_listed_and_text_repr_unchanged(fm1: lmf.LmerMod) -> None:
    m = _fit("Reaction ~ Days + (Days | Subject)", control={"optCtrl": {"maxeval": 5}})
    p = parse(m._repr_html_())
    assert any("convergence code" in x for x in p.items)
    for obj in (fm1, fm1.summary(), fm1.VarCorr):
        assert repr(obj) == str(obj)
        assert "<table" not in str(obj)


@pytest.mark.parametrize("formula", ["Reaction ~ 0 + (1 | Subject)", "Reaction ~ 1 + (1 | Subject)"])
def test_models_without_slopes_render(formula: str) -> None:
    m = _fit(formula)
    p = parse(m.summary()._repr_html_())
    captions = [t["caption"] for t in p.tables]
    assert "Random effects" in captions
    assert ("Fixed effects" in captions) == (len(m.fixef) > 0)
    assert "Correlation of fixed effects" not in captions


def test_allfit_summary_html(fm1: lmf.LmerMod) -> None:
    s = lmf.allFit(fm1, optimizers=["nloptwrap.NLOPT_LN_BOBYQA", "L-BFGS-B"]).summary()
    p = parse(s._repr_html_())
    status = table(p, "Optimizers")
    assert status[0] == ["", "OK", "messages"]
    assert [r[:2] for r in status[1:]] == [["nloptwrap.NLOPT_LN_BOBYQA", "True"],
                                           ["L-BFGS-B", "True"]]
    ll = table(p, "Log-likelihood, evaluations, time")
    np.testing.assert_allclose([num(r[1]) for r in ll[1:]], s.llik, rtol=1e-9)
    assert [int(num(r[2])) for r in ll[1:]] == s.feval.astype(int).tolist()
    fe = table(p, "Fixed effects")
    np.testing.assert_allclose([[num(c) for c in r[1:]] for r in fe[1:]], s.fixef, rtol=1e-6)
    th = table(p, "θ")
    assert th[0][1:] == list(s.theta.columns)
