"""Text output in R's and lme4's layouts: sparse matrices as the Matrix package shows them
(row labels, ``.`` for structural zeros), and the lFormula result.

Presentation only: no numerics beyond formatting.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:
    from .modular import LFormula
    from .reterms import ReTrms

__all__ = ["format_lformula", "format_r_vector", "format_reterms", "format_sparse", "r_format"]


def r_format(x: float, digits: int = 7) -> str:
    """One number with R's default print (``digits`` significant, trailing zeros dropped)."""
    if np.isnan(x):
        return "NaN"
    if np.isinf(x):
        return "Inf" if x > 0 else "-Inf"
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    text = f"{x:.{digits}g}"
    if "e" in text:
        m, e = text.split("e")
        sign = "-" if e.startswith("-") else "+"
        text = f"{m}e{sign}{e.lstrip('+-').lstrip('0').rjust(2, '0')}"
    return text


def format_sparse(
    mat: sp.spmatrix | np.ndarray,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    *,
    width: int = 80,
    cls: str = "dgCMatrix",
) -> str:
    """Show a sparse matrix as R's Matrix package does.

    Structural zeros print as ``.``; explicitly stored zeros print as ``0``. Column labels
    are shown only when the matrix is narrow; when it is wider than ``width`` characters, its
    middle columns are elided and a note says how many.
    """
    csc = sp.csc_matrix(mat)
    nrow, ncol = csc.shape
    cells = np.full((nrow, ncol), ".", dtype=object)
    coo = csc.tocoo()
    for i, j, v in zip(coo.row, coo.col, coo.data, strict=True):
        cells[i, j] = r_format(float(v))
    rlab = [str(r) for r in row_labels] if row_labels is not None else [""] * nrow
    if row_labels is None:
        rlab = [f"[{i + 1},]" for i in range(nrow)]
    lw = max((len(r) for r in rlab), default=0)
    colw = [max((len(c) for c in cells[:, j]), default=1) for j in range(ncol)]
    show_cols = col_labels is not None and ncol <= 10
    if show_cols:
        colw = [max(w, len(str(c))) for w, c in zip(colw, col_labels, strict=True)]  # type: ignore[arg-type]
    total = lw + sum(w + 1 for w in colw)
    keep = list(range(ncol))
    elided = 0
    if total > width and ncol > 2:
        budget = width - lw - 8
        left, right, used = [], [], 0
        lo, hi = 0, ncol - 1
        while lo <= hi:
            if used + colw[lo] + 1 > budget:
                break
            left.append(lo)
            used += colw[lo] + 1
            lo += 1
            if lo <= hi and used + colw[hi] + 1 <= budget and len(right) < len(left) // 3:
                right.insert(0, hi)
                used += colw[hi] + 1
                hi -= 1
        keep = [*left, -1, *right]
        elided = ncol - len(left) - len(right)
    lines = [f'{nrow} x {ncol} sparse Matrix of class "{cls}"']
    header = " " * lw
    for j in keep:
        if j < 0:
            header += " ......"
        else:
            label = str(col_labels[j]) if show_cols and col_labels is not None else ""
            header += " " + label.rjust(colw[j])
    lines.append(header if show_cols else " " * lw)
    for i in range(nrow):
        row = rlab[i].ljust(lw)
        for j in keep:
            row += " ......" if j < 0 else " " + str(cells[i, j]).rjust(colw[j])
        lines.append(row)
    if elided:
        lines.append(f" [ suppressing {elided} columns in show() ]")
    return "\n".join(lines)


def format_r_vector(values: Sequence[object], names: Sequence[str] | None = None,
                    width: int = 80) -> str:
    """Print a vector as R does: ``[1] a b c`` or, when named, names above values."""
    strs = [v if isinstance(v, str) else r_format(float(v)) for v in values]  # type: ignore[arg-type]
    if names is None:
        if not strs:
            return "numeric(0)"
        w = max(len(s) for s in strs)
        lines, line = [], "[1]"
        for k, s in enumerate(strs):
            piece = " " + s.rjust(w)
            if len(line) + len(piece) > width:
                lines.append(line)
                line = f"[{k + 1}]".rjust(len(f"[{len(strs)}]")) + ""
            line += piece
        lines.append(line)
        return "\n".join(lines)
    w = max(max(len(s) for s in strs), max(len(n) for n in names))
    head = " ".join(n.rjust(w) for n in names)
    body = " ".join(s.rjust(w) for s in strs)
    return f"{head}\n{body}"


def format_reterms(re: ReTrms, width: int = 80) -> str:
    """The random-effects structures, each shown as lme4 shows it."""
    out: list[str] = ["$Ztlist"]
    for name, block in re.Ztlist.items():
        t = next(t for t in re.terms if t.name == name)
        labels = [lev for lev in map(str, t.factor.categories) for _ in range(t.nc)]
        out.append(f"$Ztlist$`{name}`")
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


def format_lformula(pf: LFormula, width: int = 80) -> str:
    """The lFormula result: formula, X's columns, and the random-effects structures."""
    n, p = pf.X.shape
    lines = [
        f"lFormula: {pf.formula}",
        f"  {'REML' if pf.REML else 'ML'}; {n} observations used"
        + (f" ({len(pf.frame.na_action.omitted)} rows dropped for NA)"
           if pf.frame.na_action is not None else ""),
        "",
        f"$X  ({n} x {p}) columns: " + ", ".join(pf.X.columns),
        "",
        f"$reTrms$Zt: {pf.reTrms.Zt.shape[0]} x {pf.reTrms.Zt.shape[1]} sparse, "
        f"{pf.reTrms.Zt.nnz} non-zeros",
        "",
        format_reterms(pf.reTrms, width),
    ]
    if pf.wmsgs:
        lines += ["", "$wmsgs"] + [f"  {m}" for m in pf.wmsgs]
    return "\n".join(lines)
