"""R's number formatting (``format``, ``print`` of named vectors and character matrices,
``format.pval``, significance stars, ``abbreviate``) and the Matrix package's display of sparse
matrices, so that printed output lines up with R's character for character.

Presentation only, and at the bottom of the pipeline: every structure prints itself with these
(``ReTrms``, the ``lFormula`` result, ``VarCorr``), and the presentation layer's printers
(:mod:`lmeformula.printing`, :mod:`lmeformula.glmerprint`) build lme4's layouts from them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

__all__ = ["abbreviate", "format_numbers", "format_pval", "format_r_vector", "format_sparse",
           "print_char_matrix", "print_named", "r_format", "signif_digits", "signif_stars",
           "zapsmall"]


def signif_digits(x: float, digits: int) -> tuple[int, int]:
    """(significant digits needed, power of ten) of ``x`` shown with ``digits`` significant
    digits, trailing zeros dropped (R's ``scientific()`` in format.c)."""
    if x == 0 or not math.isfinite(x):
        return 1, 0
    mantissa, exponent = f"{abs(x):.{digits - 1}e}".split("e")
    sig = mantissa.replace(".", "").rstrip("0")
    return max(len(sig), 1), int(exponent)


def format_numbers(values: Sequence[float], digits: int = 7, nsmall: int = 0) -> list[str]:
    """R's ``format(x, digits, nsmall)`` of a numeric vector: common decimals, common width."""
    # + 0.0 turns -0.0 into 0.0, as R prints it; 15 significant digits drop the round-off
    # noise in which two engines differ (1527.4999999999998 is 1527.5 to R and to us)
    xs = [float(f"{float(v):.15g}") + 0.0 for v in values]
    finite = [x for x in xs if math.isfinite(x)]
    if not finite:
        out = ["NA" if math.isnan(x) else ("Inf" if x > 0 else "-Inf") for x in xs]
    else:
        # R's formatReal (format.c): the fixed width is the widest integer part *with its
        # own sign* (sleft = neg_i + left_i) plus the decimals, so a negative number with
        # fewer integer digits than the widest does not widen it; nsmall enters only after
        # fixed and scientific have been compared
        rgt, mxsl, neg, mxns = 0, 1, 0, 1
        min_e, max_e = 10**6, -(10**6)
        for x in finite:
            sig, kp = signif_digits(x, digits)
            left = kp + 1
            if kp > 0 and abs(x) < 10.0**kp:  # R's roundingwidens: 9.9996 -> "10.00"
                left -= 1
            rgt = max(rgt, sig - left)
            mxsl = max(mxsl, (1 if x < 0 else 0) + max(left, 1))
            neg = max(neg, 1 if x < 0 else 0)
            mxns = max(mxns, sig)
            min_e, max_e = min(min_e, kp), max(max_e, kp)
        fixed_width = mxsl + (rgt + 1 if rgt > 0 else 0)
        exp_width = 4 if max_e < 100 and min_e > -99 else 5
        sci_width = neg + (mxns + 1 if mxns > 1 else mxns) + exp_width
        if fixed_width > sci_width:
            out = [_sci(x, mxns - 1) if math.isfinite(x) else _nonfinite(x) for x in xs]
        else:
            rgt = max(rgt, nsmall)
            out = [f"{x:.{rgt}f}" if math.isfinite(x) else _nonfinite(x) for x in xs]
    width = max(len(s) for s in out)
    return [s.rjust(width) for s in out]


def _nonfinite(x: float) -> str:
    return "NaN" if math.isnan(x) else ("Inf" if x > 0 else "-Inf")


def _sci(x: float, decimals: int) -> str:
    m, e = f"{x:.{decimals}e}".split("e")
    sign = "-" if e.startswith("-") else "+"
    return f"{m}e{sign}{e.lstrip('+-').lstrip('0').rjust(2, '0')}"


def zapsmall(values: np.ndarray, digits: int) -> np.ndarray:
    """R 4.2's ``zapsmall``: ``round(x, digits - log10(max|x|))``, where ``round`` takes the
    nearest integer number of decimals (R 4.2 has no ``ceiling`` here)."""
    x = np.asarray(values, float)
    mx = np.nanmax(np.abs(x)) if x.size else 0.0
    decimals = max(0, math.floor(digits - math.log10(mx) + 0.5)) if mx > 0 else digits
    return np.round(x, decimals)


def print_named(values: Sequence[str], names: Sequence[str], width: int = 80) -> str:
    """R's print of a named vector (already formatted): names right-aligned above values."""
    w = max([len(v) for v in values] + [len(n) for n in names])
    per_line = max(1, width // (w + 1))
    lines = []
    for start in range(0, len(values), per_line):
        chunk = slice(start, start + per_line)
        lines.append("".join(n.rjust(w) + " " for n in names[chunk]))
        lines.append("".join(v.rjust(w) + " " for v in values[chunk]))
    return "\n".join(lines)


def abbreviate(name: str, minlength: int) -> str:
    """R's ``abbreviate`` of one name (``stripchars`` in R's C code, ``use.classes = TRUE``).

    Working from the right and never touching the first character of a word (one that
    follows a space) nor the name's first, it drops lower-case vowels that end a word, then
    other lower-case vowels, then lower-case letters that end a word, then other lower-case
    letters, and at last any character, each pass stopping as soon as the length without
    spaces is at most ``minlength``; the spaces go when the result is still longer. For a
    vector of names (R's duplicates handling) see :func:`abbreviate_all`.
    """
    chars = list(name.strip())
    if len(chars) < minlength:
        return "".join(chars)
    nspace = 0
    trailing = True
    done = False
    for i in range(len(chars) - 1, 0, -1):
        # trailing blanks are cut; inner ones are counted (they mark word starts)
        if chars[i].isspace():
            if trailing:
                del chars[i:]
            else:
                nspace += 1
        else:
            trailing = False
        if len(chars) - nspace <= minlength:
            done = True
            break

    def first_of_word(i: int) -> bool:
        return chars[i - 1].isspace()

    def last_of_word(i: int) -> bool:
        return not chars[i - 1].isspace() and (i + 1 == len(chars) or chars[i + 1].isspace())

    passes = (
        lambda i: chars[i] in "aeiou" and last_of_word(i),
        lambda i: chars[i] in "aeiou" and not first_of_word(i),
        lambda i: chars[i].islower() and last_of_word(i),
        lambda i: chars[i].islower() and not first_of_word(i),
        lambda i: not first_of_word(i) and not chars[i].isspace(),  # brute force
    )
    for drop in passes:
        if done:
            break
        for i in range(len(chars) - 1, 0, -1):
            if i < len(chars) and drop(i):
                del chars[i]
            if len(chars) - nspace <= minlength:
                done = True
                break
    if len(chars) > minlength:
        chars = [chars[0]] + [c for c in chars[1:] if not c.isspace()]
    return "".join(chars)


def abbreviate_all(names: Sequence[str], minlength: int) -> list[str]:
    """R's ``abbreviate(names, minlength)`` (``strict = FALSE``): names whose abbreviations
    coincide are abbreviated again with ``minlength`` one larger, until all differ
    (``poly(x, 2)1``/``poly(x, 2)2`` become ``p(,2)1``/``p(,2)2``, not both ``p(,2)``);
    duplicated names get one abbreviation."""
    trimmed = [n.strip() for n in names]
    unique = list(dict.fromkeys(trimmed))
    out = list(unique)
    redo = [True] * len(unique)
    length = minlength
    while True:
        for k, again in enumerate(redo):
            if again:
                out[k] = abbreviate(unique[k], length)
        seen: set[str] = set()
        dup = set()
        for a in out:
            if a in seen:
                dup.add(a)
            seen.add(a)
        if not dup:
            break
        length += 1
        redo = [a in dup for a in out]
    lookup = dict(zip(unique, out, strict=True))
    return [lookup[n] for n in trimmed]


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
    for ri, ci, v in zip(coo.row, coo.col, coo.data, strict=True):
        cells[ri, ci] = r_format(float(v))
    rlab = [str(r) for r in row_labels] if row_labels is not None else [""] * nrow
    if row_labels is None:
        rlab = [f"[{i + 1},]" for i in range(nrow)]
    lw = max((len(r) for r in rlab), default=0)
    colw = [max((len(c) for c in cells[:, j]), default=1) for j in range(ncol)]
    show_cols = col_labels is not None and ncol <= 10
    if show_cols and col_labels is not None:
        colw = [max(w, len(str(c))) for w, c in zip(colw, col_labels, strict=True)]
    total = lw + sum(w + 1 for w in colw)
    keep = list(range(ncol))
    elided = 0
    if total > width and ncol > 2:
        budget = width - lw - 8
        left: list[int]
        right: list[int]
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


def format_r_vector(values: Sequence[str | float], names: Sequence[str] | None = None,
                    width: int = 80) -> str:
    """Print a vector as R does: ``[1] a b c`` or, when named, names above values."""
    strs = [v if isinstance(v, str) else r_format(float(v)) for v in values]
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


def print_char_matrix(header: list[str], rows: list[list[str]],
                      rownames: list[str] | None = None, right: bool = False,
                      width: int | None = None) -> list[str]:
    """R's print of a character matrix with quote = FALSE (left-aligned unless ``right``).

    With ``width`` (R's ``getOption("width")``), columns that do not fit are printed in
    further blocks below, as R's ``printMatrix`` does (a column joins the block while the
    line stays shorter than ``width``)."""
    ncol = len(header)
    widths = [max([len(header[j])] + [len(r[j]) for r in rows]) for j in range(ncol)]
    rn = rownames if rownames is not None else [""] * len(rows)
    rw = max([len(x) for x in rn] + [0]) if rows else 4  # R: "[0,]" for no rows
    just = str.rjust if right else str.ljust

    def line(name: str, cells: list[str], cols: range) -> str:
        return name.ljust(rw) + "".join(" " + just(cells[j], widths[j]) for j in cols)

    blocks = [range(ncol)]
    if width is not None and ncol:
        blocks, start = [], 0
        while start < ncol:
            end, used = start + 1, rw + widths[start] + 1
            while end < ncol and used + widths[end] + 1 < width:
                used += widths[end] + 1
                end += 1
            blocks.append(range(start, end))
            start = end
    out: list[str] = []
    for cols in blocks:
        out.append(line("", header, cols))
        out += [line(n, r, cols) for n, r in zip(rn, rows, strict=True)]
    return out


def format_pval(pv: list[float], digits: int, eps: float = float(np.finfo(float).eps),
                ) -> list[str]:
    """R 4.2's ``format.pval``: values from 1e-3 up (from 1e-4 when ``digits > 1``) formatted
    together in fixed notation, smaller ones in scientific notation together, values below
    ``eps`` as ``<2e-16`` / ``< 2.2e-16`` (the digits and the space depend on the width of the
    others, as R's code decides)."""
    out = [""] * len(pv)
    small = [i for i, p in enumerate(pv) if p < eps]
    rest = [i for i, p in enumerate(pv) if p >= eps]
    expo = {i: math.floor(math.log10(pv[i])) if pv[i] > 0 else -50 for i in rest}
    fix = [i for i in rest if expo[i] >= -3 or (expo[i] == -4 and digits > 1)]
    sci = [i for i in rest if i not in fix]
    for group in (fix, sci):
        if group:
            for i, s in zip(group, format_numbers([pv[i] for i in group], digits), strict=True):
                out[i] = s
    if small:
        d = max(1, digits - 2)
        if rest:
            nc = max(len(out[i]) for i in rest)
            if d > 1 and d + 6 > nc:
                d = max(1, nc - 7)
            sep = "" if d == 1 and nc <= 6 else " "
        else:
            sep = "" if d == 1 else " "
        text = "<" + sep + format_numbers([eps], d)[0].strip()
        for i in small:
            out[i] = text
    return out


def signif_stars(p: float) -> str:
    """R's significance stars (``symnum`` with the cut points of ``printCoefmat``)."""
    if np.isnan(p):
        return ""
    for cut, sym in ((0.001, "***"), (0.01, "**"), (0.05, "*"), (0.1, ".")):
        if p <= cut:
            return sym
    return " "
