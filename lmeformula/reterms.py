"""lme4's ``mkReTrms``: from the bar terms and the model frame to Zt, Lambdat, theta and friends.

Each random-effects term ``LHS | g`` becomes a :class:`ReTerm` that knows its grouping factor
(the indicator matrix ``J``, n x nl), its model matrix ``X`` (n x nc, R's ``model.matrix(~LHS)``)
and its block ``Zt = KhatriRao(J', X')`` ((nl*nc) x n, rows level-major), plus the template of
its relative covariance factor Λ. :func:`mk_re_trms` sorts the terms as lme4 does and stacks them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from dataclasses import replace as _replace
from functools import cached_property, lru_cache

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from .errors import FormulaError, RandomEffectsError, VariableNotFoundError
from .formula.ast import BinOp, Call, Name, Node, Paren, UnaryOp, deparse
from .formula.bars import bar_name, group_label
from .formula.terms import Terms, terms
from .frame import ModelFrame
from .modelmatrix import model_matrix
from .pls.terms import lambda_template, term_shapes, term_type
from .rformat import format_r_vector, format_sparse
from .transforms import MatrixValue, as_factor, evaluate, factor_from_codes

__all__ = ["ReTerm", "ReTrms", "format_reterms", "interaction_factor", "khatri_rao",
           "mk_re_trms", "re_trms_from_terms"]


def khatri_rao(a: sp.spmatrix, b: np.ndarray | sp.spmatrix) -> sp.csc_matrix:
    """Column-wise Kronecker product of ``a`` (m x n) and ``b`` (k x n): (m*k) x n.

    Column j is ``kron(a[:, j], b[:, j])``, so row ``i*k + r`` holds ``a[i, j] * b[r, j]``.
    Zeros of the product are not stored, as with Matrix 1.5's ``KhatriRao`` (checked against
    lme4 1.1-31: ``Ztlist`` blocks hold no explicit zeros; older Matrix versions kept them).
    """
    a = sp.csc_matrix(a)
    b = np.asarray(b.todense() if isinstance(b, (sp.spmatrix, sp.sparray)) else b, dtype=float)
    k, n = b.shape
    counts = np.diff(a.indptr)
    cols = np.repeat(np.arange(n), counts)
    rows = (a.indices[:, None] * k + np.arange(k)[None, :]).ravel()
    vals = (a.data[:, None] * b[:, cols].T).ravel()
    indptr = np.concatenate([[0], np.cumsum(counts * k)])
    out = sp.csc_matrix((vals, rows, indptr), shape=(a.shape[0] * k, n))
    out.eliminate_zeros()
    return out


def interaction_factor(a: pd.Categorical, b: pd.Categorical) -> pd.Categorical:
    """lme4's ``a %i% b``: observed combinations only, ordered by a's level then b's, ``"a:b"``."""
    ca, cb = np.asarray(a.codes, dtype=np.int64), np.asarray(b.codes, dtype=np.int64)
    ok = (ca >= 0) & (cb >= 0)
    nb = max(len(b.categories), 1)
    key = np.where(ok, ca * nb + cb, -1)
    observed = np.unique(key[ok])
    codes = np.full(key.shape[0], -1, dtype=np.int64)
    codes[ok] = np.searchsorted(observed, key[ok])
    la, lb = list(map(str, a.categories)), list(map(str, b.categories))
    labels = [f"{la[k // nb]}:{lb[k % nb]}" for k in observed]
    return factor_from_codes(codes, labels)


def _grouping_factor(group: Node, frame: ModelFrame) -> pd.Categorical:
    """Evaluate a grouping expression in the model frame (lme4's ``mkBlist``)."""
    text = deparse(group)
    if isinstance(group, Paren):
        return _grouping_factor(group.expr, frame)
    if isinstance(group, Name):
        # the R model frame keys a non-syntactic name as deparsed (`Sub ject`), formulaic's
        # by the column's name
        key = group.id if group.id in frame.variables else text
        if key not in frame.variables:
            raise VariableNotFoundError(f"object '{group.id}' not found")
        return as_factor(frame.variables[key], group.id)
    if isinstance(group, BinOp) and group.op == ":":
        return interaction_factor(_grouping_factor(group.left, frame),
                                  _grouping_factor(group.right, frame))
    if isinstance(group, BinOp) and group.op in ("+", "*", "-", "^", "%in%", "|", "||"):
        # lme4 (with R's warning "'*' not meaningful for factors"); a bar in the grouping
        # expression, (1 | (1 | g)), too
        raise RandomEffectsError(f"Invalid grouping factor specification, {text}")
    # any other expression (factor(k), as.factor(k)) is evaluated in the model frame, as
    # lme4's mkBlist does: it works when the variables it uses are themselves variables of
    # the frame (y ~ k + (1 | factor(k))), and fails as lme4 does when they are not
    # (y ~ x + (1 | factor(k)): the frame holds factor(k), not k)
    columns = dict(frame.variables)
    for key in frame.variables:  # a non-syntactic name is keyed as deparsed: `my var`
        if key.startswith("`") and key.endswith("`"):
            columns.setdefault(key[1:-1], frame.variables[key])
    # lme4's factorize: the variables the expression names are made factors before it is
    # evaluated, so (1 | cut(x, 3)) fails as in lme4 ("'x' must be numeric")
    for name in _names_in(group):
        if name in columns and not isinstance(columns[name], MatrixValue):
            columns[name] = as_factor(columns[name], name)
    try:
        value = evaluate(group, columns, frame.nrow)
    except (FormulaError, TypeError) as err:
        raise RandomEffectsError(
            f"couldn't evaluate grouping factor {text} within model frame: {err}. "
            "Try adding grouping factor to data frame explicitly if possible"
        ) from None
    return as_factor(value, text)


def _names_in(node: Node) -> set[str]:
    """The variables an expression names (R's ``all.vars``)."""
    if isinstance(node, Name):
        return {node.id}
    if isinstance(node, Call):
        return set().union(*(_names_in(v) for _, v in node.args))
    if isinstance(node, BinOp):
        return _names_in(node.left) | _names_in(node.right)
    if isinstance(node, (Paren, UnaryOp)):
        return _names_in(node.expr if isinstance(node, Paren) else node.operand)
    return set()


@dataclass(frozen=True)
class ReTerm:
    """One random-effects term ``LHS | g``: its pieces before stacking.

    Attributes
    ----------
    name
        lme4's term name, ``deparse(bar)``: ``"Days | Subject"``.
    group_name
        The grouping factor's name, ``deparse(g)``: ``"Subject"``, ``"cask:batch"``.
    factor
        The grouping factor (levels in lme4's order, unused levels dropped).
    X
        The term's model matrix X_i (n x nc), R's ``model.matrix(~LHS, fr)``.
    cnms
        X_i's column names.
    key
        The term's key in ``Ztlist``: its name, made unique (``"1 | g.1"``) when a formula
        repeats a term, as R's ``make.unique`` would.
    """

    name: str
    group_name: str
    factor: pd.Categorical
    X: np.ndarray
    cnms: list[str]
    key: str = ""

    @cached_property  # read several times per fit; pandas' categories are slow to count
    def nl(self) -> int:
        """Number of levels of the grouping factor."""
        return len(self.factor.categories)

    @property
    def nc(self) -> int:
        """Number of columns of the term."""
        return self.X.shape[1]

    @property
    def J(self) -> sp.csc_matrix:
        """Indicator matrix J_i (n x nl): row j has a 1 in the column of observation j's level."""
        codes = np.asarray(self.factor.codes)
        n = codes.shape[0]
        return sp.csc_matrix((np.ones(n), (np.arange(n), codes)), shape=(n, self.nl))

    @property
    def Zt(self) -> sp.csc_matrix:
        """Zt_i = KhatriRao(J_i', X_i'), (nl*nc) x n.

        Built straight from the factor's codes (see :func:`_stacked_zt`), zeros not stored,
        as :func:`khatri_rao`.
        """
        return _stacked_zt([self])

    @property
    def theta_length(self) -> int:
        """Length of this term's theta: nc(nc+1)/2."""
        return term_type(self.nl, self.nc).theta_length

    def theta_index(self, row: int, col: int) -> int:
        """Position of Λ_i[row, col] (row >= col, 0-based) in this term's theta (column-major)."""
        return col * self.nc - col * (col - 1) // 2 + (row - col)

    def theta_names(self) -> list[str]:
        """lme4's names: ``group.col`` on the diagonal, ``group.row.col`` off it."""
        return term_type(self.nl, self.nc).theta_names(self.group_name, self.cnms)


@dataclass
class ReTrms:
    """lme4's ``reTrms`` list, terms in lme4's order.

    Attributes
    ----------
    Zt
        q x n sparse (CSC) random-effects model matrix, transposed; exact zeros dropped (built
        on first access: the fit counts its cross-products from the terms' codes and X_i).
    Ztlist
        Term name -> block of Zt (Zt_i of each term).
    Lambdat
        q x q sparse Λ' with the full triangular pattern of every block (zeros kept).
    Lind
        0-based index into theta of every stored value of Lambdat (CSC order).
    theta
        Initial covariance parameters: 1 on diagonals of Λ_i, 0 off them.
    lower
        Lower bounds: 0 for diagonal elements, -inf otherwise.
    Gp
        Group pointers: term i occupies rows Gp[i]:Gp[i+1] of Zt.
    flist
        Grouping factor name -> factor, one per unique factor, in order of first use.
    assign
        For each term, the index of its factor in ``flist`` (0-based).
    cnms
        Column names of each term.
    cnms_names
        The grouping-factor name of each term (R's ``names(cnms)``).
    nl
        Levels per term, indexed by grouping-factor name.
    terms
        The :class:`ReTerm` objects (J_i, X_i, ...), lme4's order.
    ord
        Position in formula order of each sorted term.
    """

    theta: np.ndarray
    lower: np.ndarray
    Gp: np.ndarray
    flist: dict[str, pd.Categorical]
    assign: np.ndarray
    cnms: list[list[str]]
    cnms_names: list[str]
    terms: list[ReTerm] = field(repr=False)
    ord: np.ndarray = field(repr=False)

    def level_factors(self, compact: bool = False) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each term's level codes and model matrix X_i (float), in Zt's order: what the
        engine counts its cross-products from. The codes are int64, or with ``compact`` the
        factor's own codes at their own width (int16 for up to 32,767 levels: no copy; the
        blocked engine's counting widens them where it computes with them)."""
        return [(np.asarray(t.factor.codes) if compact
                 else np.asarray(t.factor.codes, dtype=np.int64), np.asarray(t.X, dtype=float))
                for t in self.terms]

    @property
    def q(self) -> int:
        """Number of random effects (rows of Zt), without building Zt."""
        return int(self.Gp[-1])

    # Zt, Ztlist, Lambdat and Lind are built on first access: a fit needs theta and lower,
    # and counts its cross-products from the terms (an n x q Zt of a 10^6-row crossed design
    # is as large as the data frame)
    @cached_property
    def Zt(self) -> sp.csc_matrix:
        """q x n sparse (CSC) random-effects model matrix, transposed; exact zeros dropped."""
        return _stacked_zt(self.terms)

    def make_zt(self) -> sp.csc_matrix:
        """Zt (the attribute, built on the first call): what the engine and the checks are
        given to build it only if they need it."""
        return self.Zt

    def share_fixed_matrix(self, x: np.ndarray) -> None:
        """Let a term whose X_i holds the very bits of ``x`` (the fixed-effects model matrix)
        use ``x`` as its X_i: in ``y ~ x + (x | g)`` both are [1, x], and one array then
        serves as both (the 10⁶-row dense crossed design: 15 MB less held by the fit).
        Neither is written to after it is built. X_i's readers are elementwise (the counted
        cross-products, Zt's values) or sum at most two products per row (the fitted random
        effects' ``einsum``, where any order gives the same sum): only terms of at most two
        columns share, so that X_i's layout, now X's, changes no result. The shared array is
        made read-only: a user's edit of one (``pf.X_values[:, 1] *= 2``) raises instead of
        changing the other unseen."""
        for k, t in enumerate(self.terms):
            xi = t.X
            if (t.nc <= 2 and xi.shape == x.shape and xi.dtype == x.dtype == np.float64
                    and xi.flags.writeable  # not the broadcast intercept
                    and np.array_equal(xi.view(np.uint64), x.view(np.uint64))):  # bit for bit
                x.flags.writeable = False
                self.terms[k] = _replace(t, X=x)
                return

    @cached_property
    def Ztlist(self) -> dict[str, sp.csc_matrix]:
        """Term name -> block of Zt (Zt_i of each term)."""
        return {t.key: t.Zt for t in self.terms}

    @cached_property
    def _lambda_template(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return lambda_template(term_shapes(self.terms))

    @cached_property
    def Lind(self) -> np.ndarray:
        """0-based index into theta of every stored value of Lambdat (CSC order)."""
        return self._lambda_template[2]

    @cached_property
    def Lambdat(self) -> sp.csc_matrix:
        """q x q sparse Λ' at the initial theta, the full triangular pattern of every block
        (zeros kept)."""
        rows, ptr, lind = self._lambda_template
        q = int(self.Gp[-1])
        return sp.csc_matrix((self.theta[lind], rows, ptr), shape=(q, q))

    @cached_property
    def nl(self) -> pd.Series:
        """Levels per term, indexed by grouping-factor name."""
        return pd.Series([t.nl for t in self.terms], index=[t.group_name for t in self.terms],
                         dtype=np.int64)

    @property
    def theta_names(self) -> list[str]:
        """Names of theta, lme4's ``getME(., "theta")`` names."""
        return [n for t in self.terms for n in t.theta_names()]

    @property
    def Ji(self) -> dict[str, sp.csc_matrix]:
        """Term name -> indicator matrix J_i (n x nl_i)."""
        return {t.key: t.J for t in self.terms}

    @property
    def Xi(self) -> dict[str, pd.DataFrame]:
        """Term name -> the term's model matrix X_i (n x nc_i), columns named by cnms."""
        return {t.key: pd.DataFrame(t.X, columns=t.cnms) for t in self.terms}

    def __repr__(self) -> str:
        # the structures print themselves, with R's formatting from rformat (nothing below the
        # presentation layer imports the printers)
        return format_reterms(self)


def format_reterms(re: ReTrms, width: int = 80) -> str:
    """The random-effects structures, each shown as lme4 shows it."""
    out: list[str] = ["$Ztlist"]
    for t, block in zip(re.terms, re.Ztlist.values(), strict=True):
        labels = [lev for lev in map(str, t.factor.categories) for _ in range(t.nc)]
        out.append(f"$Ztlist$`{t.name}`")
        out.append(format_sparse(block, labels, None, width=width))
        out.append("")
    out.append("$theta")
    out.append(format_r_vector(list(re.theta)))
    out.append("\n$Lind")
    out.append(format_r_vector([int(v) + 1 for v in re.Lind]) + "   (1-based, as in R)")
    out.append("\n$Gp")
    out.append(format_r_vector([int(v) for v in re.Gp]))
    out.append("\n$lower")
    out.append(format_r_vector(list(re.lower)).replace("inf", "Inf"))
    out.append("\n$flist")
    for name, f in re.flist.items():
        levels = list(map(str, f.categories))
        shown = " ".join(levels[:12]) + (" ..." if len(levels) > 12 else "")
        out.append(f"  {name}: factor with {len(levels)} levels: {shown}")
    out.append("\n$cnms")
    for name, cols in zip(re.cnms_names, re.cnms, strict=True):
        out.append(f"  ${name}: " + " ".join(f'"{c}"' for c in cols))
    out.append("\n$nl")
    out.append(format_r_vector(list(re.nl.to_numpy()), list(re.nl.index)))
    return "\n".join(out)


def lme4_term_order(nl: Sequence[int]) -> list[int]:
    """lme4's reordering: keep formula order if nl is non-increasing, else ``rev(order(nl))``:
    decreasing nl with ties in reverse formula order."""
    nl = list(nl)
    if all(nl[i] >= nl[i + 1] for i in range(len(nl) - 1)):
        return list(range(len(nl)))
    return sorted(range(len(nl)), key=lambda i: (-nl[i], -i))


@lru_cache(maxsize=256)
def _bar_parts(bar: BinOp) -> tuple[str, str, Terms]:
    """A bar's term name, its grouping factor's label and its left side's terms: they
    depend on the formula alone (syntax trees are frozen), so refits of a formula reuse
    them."""
    return bar_name(bar), group_label(bar.right), terms(bar.left)


def make_re_term(bar: BinOp, frame: ModelFrame) -> ReTerm:
    """Build one :class:`ReTerm` from a bar ``LHS | g`` and the model frame."""
    name, label, lhs_terms = _bar_parts(bar)
    factor = _grouping_factor(bar.right, frame)
    if np.all(np.asarray(factor.codes) < 0):
        raise RandomEffectsError(f"Invalid grouping factor specification, {deparse(bar.right)}")
    if (np.asarray(factor.codes) < 0).any():  # kept by na_action="pass"
        raise RandomEffectsError(f"Invalid grouping factor specification, {deparse(bar.right)}"
                                 ": it has missing values")
    # _grouping_factor's factors have no unused levels (as_factor and interaction_factor
    # drop them)
    mm = model_matrix(lhs_terms, frame.variables, frame.nrow)
    if mm.values.shape[1] == 0:
        raise RandomEffectsError(f"random-effects term has no columns: ({name})")
    values = mm.values
    if mm.columns == ["(Intercept)"] and bool(np.all(values == 1.0)):
        # an intercept's X_i is a column of ones: one value broadcast to n x 1 (read-only),
        # not an n-length array held for the model's life (its public copies, Xi, mmList
        # and Zt, are ordinary arrays)
        values = np.broadcast_to(np.ones((1, 1)), values.shape)
    return ReTerm(name, label, factor, values, mm.columns)



def _with_unique_keys(terms_: list[ReTerm]) -> list[ReTerm]:
    """Give each term its Ztlist key: the name, with ".1", ".2"... for repeats."""
    import dataclasses

    seen: dict[str, int] = {}
    out = []
    for t in terms_:
        k = seen.get(t.name, 0)
        seen[t.name] = k + 1
        out.append(dataclasses.replace(t, key=t.name if k == 0 else f"{t.name}.{k}"))
    return out


def _stacked_zt(terms_: Sequence[ReTerm]) -> sp.csc_matrix:
    """Zt: the terms' blocks stacked (rows term by term), built column by column. Column j
    of J_i' has its single 1 in row code_j, so column j of KhatriRao(J_i', X_i') holds X_i's
    row j in rows code_j*nc .. code_j*nc + nc-1: observation j has, for each term, its X_i
    row in the rows of its level."""
    n = terms_[0].X.shape[0]
    width = sum(t.nc for t in terms_)
    q = sum(t.nl * t.nc for t in terms_)
    # scipy's own choice of index type, made here (it then neither scans nor converts) and
    # used from the start: no n x width array of 64-bit rows to convert afterwards
    index: type[np.signedinteger] = np.int32 if max(q, n * width) < 2**31 - 1 else np.int64
    row: npt.NDArray[np.signedinteger] = np.empty((n, width), dtype=index)
    val: npt.NDArray[np.float64] = np.empty((n, width))
    offset, col = 0, 0
    for t in terms_:
        # rows increase along each column: terms are stacked in order, each in its range
        block = row[:, col : col + t.nc]
        np.multiply(np.asarray(t.factor.codes)[:, None], t.nc, out=block, dtype=index)
        block += np.arange(offset, offset + t.nc, dtype=index)
        val[:, col : col + t.nc] = t.X
        offset += t.nl * t.nc
        col += t.nc
    row, val = row.ravel(), val.ravel()
    stored = val != 0.0  # zeros are not stored, NaN is (lFormula reports it)
    if stored.all():
        indptr = np.arange(0, n * width + 1, width, dtype=index)
    else:
        row, val = row[stored], val[stored]
        indptr = np.zeros(n + 1, dtype=index)
        np.cumsum(stored.reshape(n, width).sum(axis=1), out=indptr[1:])
    del stored
    return sp.csc_matrix((val, row, indptr), shape=(offset, n))


def mk_re_trms(bars: Sequence[BinOp], frame: ModelFrame, reorder_terms: bool = True) -> ReTrms:
    """lme4's ``mkReTrms(bars, fr)``: stack the terms in lme4's order.

    Parameters
    ----------
    bars
        Random-effects terms from :func:`lmeformula.formula.findbars`.
    frame
        The model frame.
    reorder_terms
        Sort terms by decreasing number of levels, as lme4 does by default.

    Returns
    -------
    ReTrms
    """
    if not bars:
        raise RandomEffectsError("No random effects terms specified in formula")
    return re_trms_from_terms([make_re_term(b, frame) for b in bars], reorder_terms)


def re_trms_from_terms(built: Sequence[ReTerm], reorder_terms: bool = True) -> ReTrms:
    """Sort built terms as lme4 does and stack them: the part of ``mkReTrms`` after each term's
    factor and model matrix are known (shared by the R and the formulaic front ends).

    Parameters
    ----------
    built
        One :class:`ReTerm` per random-effects term, in formula order.
    reorder_terms
        Sort terms by decreasing number of levels, as lme4 does by default.

    Returns
    -------
    ReTrms
    """
    if not built:
        raise RandomEffectsError("No random effects terms specified in formula")
    order = lme4_term_order([t.nl for t in built]) if reorder_terms else list(range(len(built)))
    sorted_terms = _with_unique_keys([built[i] for i in order])

    shapes = term_shapes(sorted_terms)

    # Zt has nl * nc rows per term by construction (lme4's check of nrow(Zt) against Gp
    # holds here without building it)
    gp = np.concatenate([[0], np.cumsum([t.nl * t.nc for t in sorted_terms])]).astype(np.int64)
    flist: dict[str, pd.Categorical] = {}
    for t in sorted_terms:
        flist.setdefault(t.group_name, t.factor)
    names = list(flist)
    assign = np.array([names.index(t.group_name) for t in sorted_terms], dtype=np.int64)
    return ReTrms(
        theta=np.concatenate([s.initial_theta for s in shapes]),
        lower=np.concatenate([s.lower for s in shapes]),
        Gp=gp,
        flist=flist,
        assign=assign,
        cnms=[list(t.cnms) for t in sorted_terms],
        cnms_names=[t.group_name for t in sorted_terms],
        terms=sorted_terms,
        ord=np.array(order, dtype=np.int64),
    )
