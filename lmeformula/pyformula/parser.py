"""lme4's random-effects bars in formulaic's own parser (``syntax="formulaic"``).

formulaic parses a formula in three steps (tokens -> syntax tree -> terms), and its operators
come from an *operator resolver*. :class:`LmerOperatorResolver` adds two operators, ``|`` and
``||``, that are only accepted directly inside parentheses, so ``(x | g)`` and ``(x || g)`` are
random-effects terms while formulaic's multi-part ``|`` keeps its meaning outside parentheses.
In the fixed part a bar contributes no terms (lme4's ``nobars``); its two sides are read from the
syntax tree: the left side is a formulaic term set (with the implicit intercept lme4 gives it:
``(x | g)`` is ``(1 + x | g)``, ``(0 + x | g)`` has none), the right side a grouping factor
(column names joined by ``:`` and ``/``), which is handed to the same R-syntax tools that the R
front end uses (slash expansion, grouping factors, lme4's term names).

Nothing here looks at data; nothing is evaluated.
"""

from __future__ import annotations

import ast as pyast
import re
import warnings
from collections.abc import Iterable, MutableMapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from formulaic import Formula, SimpleFormula
from formulaic.errors import FormulaicError
from formulaic.parser import DefaultFormulaParser, DefaultOperatorResolver
from formulaic.parser.types import ASTNode, Operator, OrderedSet, Term, Token
from formulaic.parser.utils import merge_operator_tokens

from ..errors import FormulaError, LmeFormulaWarning, RandomEffectsError
from ..formula.ast import BinOp, Name, Node, deparse
from ..formula.bars import expand_slash, group_label
from ..formula.limits import MAX_FORMULA_TOKENS
from ..formula.parser import parse_expression

__all__ = [
    "FormulaicBar",
    "FormulaicFormula",
    "LmerFormulaParser",
    "LmerOperatorResolver",
    "parse_formulaic",
]


class BarOperator(Operator):
    """``|`` or ``||`` inside parentheses: a random-effects term (no fixed-effects terms)."""


def _directly_in_parentheses(context: Sequence[Any]) -> bool:
    # the parser's context stack holds the enclosing operators and context tokens ("(")
    return bool(context) and isinstance(context[-1], Token) and context[-1].token == "("


class LmerOperatorResolver(DefaultOperatorResolver):
    """formulaic's default operators plus lme4's bars inside parentheses."""

    @property
    def operators(self) -> list[Operator]:
        bars = [
            BarOperator(symbol, arity=2, precedence=-50, associativity=None,
                        to_terms=lambda lhs, rhs: OrderedSet(),  # nobars: no fixed terms
                        accepts_context=_directly_in_parentheses)
            for symbol in ("|", "||")
        ]
        return [*super().operators, *bars]


def _is_inserted(token: Token) -> bool:
    """Tokens the default parser inserted (the implicit intercept ``1 +``) have no source."""
    return token.source_start is None and token.token in ("1", "+")


def _bar_tokens(tokens: list[Token]) -> list[Token]:
    """Undo what the default parser's intercept handling does to bars inside parentheses.

    The default parser inserts ``1 +`` after every ``|`` (the parts of a multi-part formula
    each get an intercept), which splits ``||`` and would put an intercept into the grouping
    factor; inside parentheses those insertions are removed, ``||`` is joined again, and the
    bar's left side gets the implicit intercept instead, as lme4 reads ``(x | g)``."""
    out: list[Token] = []
    depth, i = 0, 0
    while i < len(tokens):
        token = tokens[i]
        if token.kind is Token.Kind.CONTEXT:
            depth += 1 if token.token in "([{" else -1
        if depth > 0 and token.kind is Token.Kind.OPERATOR and token.token == "|":
            j = i + 1
            while j < len(tokens) and _is_inserted(tokens[j]):
                j += 1
            if (j < len(tokens) and tokens[j].token == "|"
                    and tokens[j].source_start == token.source_start):
                if _source_text(token) not in ("||", ""):
                    # formulaic's tokenizer reads "| |" as "||"; R reads two operators in a
                    # row, a syntax error
                    raise FormulaError(f"unexpected '|' at position {token.source_start}: "
                                       "'||' is written without a space")
                token = token.copy_with_attrs(token="||")
                j += 1
                while j < len(tokens) and _is_inserted(tokens[j]):
                    j += 1
            out.append(token)
            i = j
            continue
        out.append(token)
        i += 1
    with_intercepts: list[Token] = []
    for k, token in enumerate(out):
        with_intercepts.append(token)
        if token.kind is Token.Kind.CONTEXT and token.token == "(" and _bar_at_depth(out, k):
            with_intercepts += [Token("1", kind=Token.Kind.VALUE),
                                Token("+", kind=Token.Kind.OPERATOR)]
    # "1 + -1 + x" must read "1 - 1 + x", as the default parser does for "0 + x"
    return list(merge_operator_tokens(with_intercepts, symbols={"+", "-"}))


def _source_text(token: Token) -> str:
    """The formula text a token was read from ("" when it has none)."""
    if token.source is None or token.source_start is None or token.source_end is None:
        return ""
    return str(token.source[token.source_start:token.source_end + 1])


def _bar_at_depth(tokens: list[Token], open_index: int) -> Token | None:
    """The bar operator directly inside the parenthesis opened at ``open_index``, if any."""
    depth = 0
    for token in tokens[open_index + 1:]:
        if token.kind is Token.Kind.CONTEXT:
            if token.token == "(":
                depth += 1
            elif token.token == ")":
                if depth == 0:
                    return None
                depth -= 1
        elif depth == 0 and token.kind is Token.Kind.OPERATOR and token.token in ("|", "||"):
            return token
    return None


class LmerFormulaParser(DefaultFormulaParser):
    """formulaic's default parser with :class:`LmerOperatorResolver` and lme4's bar intercepts."""

    def __init__(self) -> None:
        super().__init__(operator_resolver=LmerOperatorResolver())

    def get_tokens_from_formula(self, formula: str, *, context: MutableMapping[str, Any]
                                ) -> Iterable[Token]:
        tokens = list(super().get_tokens_from_formula(formula, context=context))
        return _bar_tokens(tokens)


PARSER = LmerFormulaParser()


@dataclass(frozen=True)
class FormulaicBar:
    """One random-effects term after ``||`` and ``/`` expansion.

    Attributes
    ----------
    name
        lme4's term name, ``"Days | Subject"`` (R's deparse where the text is R syntax too).
    lhs
        The term's left side as a formulaic formula (intercept included unless removed).
    group
        The grouping factor as an R syntax tree (names joined by ``:``).
    """

    name: str
    lhs: SimpleFormula
    group: Node

    @property
    def group_name(self) -> str:
        """lme4's name of the grouping factor, ``deparse(g)`` (a lone name without backticks)."""
        return group_label(self.group)


@dataclass(frozen=True)
class FixedTerms:
    """The fixed part's term labels, formulaic's names, intercept excluded."""

    term_labels: tuple[str, ...]


@dataclass(frozen=True)
class FormulaicFormula:
    """A formula in formulaic syntax split into its parts (no data involved).

    Attributes
    ----------
    text
        The formula as given.
    response
        The response's terms as a formulaic formula, or None for a one-sided formula.
    fixed_formula
        The fixed-effects terms (bars removed) as a formulaic formula.
    bars
        The random-effects terms in formula order, ``||`` and ``/`` expanded.
    """

    text: str
    response: SimpleFormula | None
    fixed_formula: SimpleFormula
    bars: tuple[FormulaicBar, ...]
    response_dropped: bool = False

    # What printing and anova read from an R-syntax ParsedFormula
    lhs = None
    rhs = None

    @property
    def expanded(self) -> str:
        """The formula text (formulaic keeps no R deparse)."""
        return self.text

    @property
    def fixed(self) -> FixedTerms:
        """The fixed part's term labels (what ``anova`` reads, as from R's ``terms``)."""
        return FixedTerms(tuple(str(t) for t in self.fixed_formula if str(t) != "1"))

    def structure(self) -> Formula:
        """One structured formulaic formula of every part, materialised together so that
        rows with missing values are dropped from all of them at once: ``lhs`` (when there is
        a response), ``rhs`` (fixed part), and ``re_0``, ``re_1``... (the bars' left sides)."""
        parts: dict[str, SimpleFormula] = {"rhs": self.fixed_formula}
        if self.response is not None:
            parts["lhs"] = self.response
        for k, bar in enumerate(self.bars):
            parts[f"re_{k}"] = bar.lhs
        return Formula(**parts)


_R_ONLY_FUNCTIONS = re.compile(r"(?<![\w.])offset\s*\(")


def _check_python_token(token: Token) -> None:
    """The R-only constructs that formulaic would otherwise misread or fail on deep down."""
    text = token.token
    if "^" in text:
        raise FormulaError(
            f"'{text}': '^' is XOR in Python (syntax='formulaic' evaluates Python); "
            "write the power as {x**2} or I(x**2), or use syntax='R' for R's x^2"
        )
    if _R_ONLY_FUNCTIONS.search(text):
        raise FormulaError(
            f"'{text}': offset() is R formula syntax, which formulaic does not have; "
            "give the offset with offset=, or use syntax='R'"
        )
    try:
        # formulaic quotes names that are not Python identifiers in backticks
        pyast.parse(re.sub(r"`[^`]*`", "_", text.strip("{}")), mode="eval")
    except SyntaxError:
        raise FormulaError(
            f"'{text}' is not a Python expression (syntax='formulaic' evaluates Python); "
            "R functions such as as.numeric() need syntax='R'"
        ) from None


def _terms_of(node: Any) -> OrderedSet[Term]:
    terms = node.to_terms() if isinstance(node, (ASTNode, Token)) else OrderedSet()
    if not isinstance(terms, OrderedSet):
        raise FormulaError("a random-effects term's left side must be a plain term list")
    return terms


def _group_node(node: Any) -> Node:
    """A bar's right side as an R syntax tree: names joined by ``:`` and ``/``."""
    if isinstance(node, Token):
        if node.kind is Token.Kind.NAME:
            # formulaic keeps the backticks of a quoted name (`Sub ject`); the column has none
            name = node.token
            if len(name) > 1 and name.startswith("`") and name.endswith("`"):
                name = name[1:-1]
            return Name(name)
        raise RandomEffectsError(
            f"Invalid grouping factor specification, {node.token}: the grouping factor must be "
            "column names joined by ':' or '/' (add a transformed factor to the data)"
        )
    if isinstance(node, ASTNode) and node.operator.symbol in (":", "/"):
        left, right = node.args
        return BinOp(node.operator.symbol, _group_node(left), _group_node(right))
    symbol = node.operator.symbol if isinstance(node, ASTNode) else str(node)
    raise RandomEffectsError(f"Invalid grouping factor specification, operator '{symbol}' "
                             "(the grouping factor is names joined by ':' or '/')")


def _lhs_name(text: str) -> str:
    """lme4's spelling of a bar's left side: R's deparse where the text is R syntax too."""
    try:
        return deparse(parse_expression(text))
    except (FormulaError, ValueError):
        return " ".join(text.split())


def _find_bars(node: Any, found: list[tuple[str, Any, Any]]) -> None:
    if isinstance(node, ASTNode):
        if isinstance(node.operator, BarOperator):
            left, right = node.args
            if any(_contains_bar(a) for a in (left, right)):
                raise FormulaError("a random-effects term cannot contain another one")
            found.append((node.operator.symbol, left, right))
            return
        for arg in node.args:
            _find_bars(arg, found)


def _contains_bar(node: Any) -> bool:
    if isinstance(node, ASTNode):
        return isinstance(node.operator, BarOperator) or any(_contains_bar(a) for a in node.args)
    return False


def _expand(symbol: str, lhs_text: str, lhs: OrderedSet[Term], group: Node
            ) -> list[FormulaicBar]:
    """``||`` into independent terms, then ``a/b`` into nested grouping factors (lme4)."""
    has_intercept = any(str(t) == "1" for t in lhs)
    others = [t for t in lhs if str(t) != "1"]
    if symbol == "||":
        pieces = [("1", [t for t in lhs if str(t) == "1"])] if has_intercept else []
        pieces += [(f"0 + {t}", [t]) for t in SimpleFormula(others)]
    else:
        pieces = [(_lhs_name(lhs_text), list(lhs))]
    out = []
    for text, piece_terms in pieces:
        # the R tools expand the slash; the placeholder stands for the left side
        for bar in expand_slash(BinOp("|", Name("."), group)):
            out.append(FormulaicBar(f"{text} | {deparse(bar.right)}",
                                    SimpleFormula(piece_terms), bar.right))
    return out


def parse_formulaic(formula: str) -> FormulaicFormula:
    """Split a formula in formulaic syntax into response, fixed part and lme4 bars.

    Parameters
    ----------
    formula
        ``"Reaction ~ np.log(Days + 1) + {Days**2} + (Days | Subject)"``.

    Returns
    -------
    FormulaicFormula

    Raises
    ------
    FormulaError
        For text formulaic cannot parse, R-only constructs (``x^2`` inside a Python
        expression, ``%in%``, ``offset()``, R functions that are not Python), and
        multi-part formulas.
    """
    if not isinstance(formula, str):
        raise FormulaError(f"formula must be a string, not {type(formula).__name__}")
    parsed = _parse_formulaic(formula)
    if parsed.response_dropped:  # R's model.matrix warning (the parse itself is cached)
        warnings.warn("the response appeared on the right-hand side and was dropped",
                      LmeFormulaWarning, stacklevel=4)
    return parsed


@lru_cache(maxsize=128)
def _parse_formulaic(formula: str) -> FormulaicFormula:
    context: dict[str, Any] = {}
    try:
        tokens = list(PARSER.get_tokens_from_formula(formula, context=context))
    except (FormulaicError, SyntaxError) as err:
        _check_r_operators(formula, formula)
        raise _parse_error(formula, err) from None
    if len(tokens) > MAX_FORMULA_TOKENS:  # the R syntax's limit: formulaic took 20 s on 4e5
        raise FormulaError(f"formula too long: {len(tokens)} tokens (more than "
                           f"{MAX_FORMULA_TOKENS:,})")
    _check_r_operators(formula, _outside_python(formula, tokens))
    if any(t.kind is Token.Kind.OPERATOR and t.token == "." for t in tokens):
        raise FormulaError(
            f"{formula!r}: '.' is not supported in syntax='formulaic' (neither R's 'the old "
            "formula' in update() nor 'every other column'): write the terms out, or use "
            "syntax='R'"
        )
    try:
        for token in tokens:
            if token.kind is Token.Kind.PYTHON:
                _check_python_token(token)
        tree = PARSER.get_ast_from_tokens(tokens, context=context)
        structured = PARSER.get_terms_from_ast(tree, context=context)
    except (FormulaicError, SyntaxError) as err:
        raise _parse_error(formula, err) from None

    if structured._has_structure and "rhs" in structured._structure:
        response, fixed = structured.lhs, structured.rhs
    elif structured._has_structure:
        raise FormulaError(f"{formula!r}: a formula for lmer has one response and one "
                           "right-hand side")
    else:
        response, fixed = None, structured.root
    if not isinstance(fixed, OrderedSet) or (response is not None
                                              and not isinstance(response, OrderedSet)):
        raise FormulaError(
            f"{formula!r}: formulaic's multi-part '|' outside parentheses makes a multi-part "
            "formula; random-effects terms are written inside parentheses, (x | g)"
        )

    found: list[tuple[str, Any, Any]] = []
    _find_bars(tree, found)
    bar_tokens = [t for t in tokens if t.kind is Token.Kind.OPERATOR
                  and t.token in ("|", "||") and _inside_parentheses(tokens, t)]
    bars: list[FormulaicBar] = []
    for (symbol, left, right), bar_token in zip(found, bar_tokens, strict=True):
        lhs_text = _source_before(formula, tokens, bar_token)
        bars.extend(_expand(symbol, lhs_text, _terms_of(left), _group_node(right)))
    # R drops a response that is also a fixed-effects term (y ~ y + x), and says so;
    # formulaic would keep it, and the fit would be an exact one (log(0) in the criterion)
    response_terms = {str(t) for t in response} if response is not None else set()
    kept = [t for t in fixed if str(t) == "1" or str(t) not in response_terms]
    return FormulaicFormula(
        text=formula,
        response=SimpleFormula(list(response)) if response is not None else None,
        fixed_formula=SimpleFormula(kept),
        bars=tuple(bars),
        response_dropped=len(kept) < len(fixed),
    )


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def plain_message(err: BaseException) -> str:
    """An exception's message without the terminal colour codes formulaic puts in it."""
    return _ANSI.sub("", str(err))


def _parse_error(formula: str, err: Exception) -> FormulaError:
    if isinstance(err, SyntaxError):
        return FormulaError(
            f"formulaic cannot parse {formula!r} ({err.msg}): a term is not a Python "
            "expression (syntax='formulaic' evaluates Python); R functions such as "
            "as.numeric() need syntax='R'"
        )
    return FormulaError(f"formulaic cannot parse {formula!r}: {plain_message(err)}")


def _check_r_operators(formula: str, text: str) -> None:
    """R's ``%in%`` / ``%op%`` in the formula's own syntax (formulaic's tokenizer would read
    ``a %in% b`` as ``a in b`` and ``a %/% b`` as ``a / b``); ``%`` in a Python expression
    (``{Days % 2}``) is Python's modulo."""
    if re.search(r"%[^%\s]*%", text):
        raise FormulaError(
            f"{formula!r}: R's %in% (and other %op%) is not formulaic syntax; formulaic "
            "writes nesting as 'a / b' or 'b in a', or use syntax='R'"
        )


def _outside_python(formula: str, tokens: list[Token]) -> str:
    """The formula with its Python expressions and quoted names blanked out."""
    chars = list(formula)
    for token in tokens:
        if token.source_start is None or token.source_end is None:
            continue
        if token.kind is Token.Kind.PYTHON or (token.kind is Token.Kind.NAME
                                               and formula[token.source_start] == "`"):
            chars[token.source_start:token.source_end + 1] = " " * (
                token.source_end + 1 - token.source_start)
    return "".join(chars)


def _inside_parentheses(tokens: list[Token], target: Token) -> bool:
    depth = 0
    for token in tokens:
        if token is target:
            return depth > 0
        if token.kind is Token.Kind.CONTEXT:
            depth += 1 if token.token in "([{" else -1
    return False


def _source_before(formula: str, tokens: list[Token], bar: Token) -> str:
    """The source text between a bar's opening parenthesis and the bar."""
    index = next(i for i, t in enumerate(tokens) if t is bar)
    depth = 0
    for token in reversed(tokens[:index]):
        if token.kind is Token.Kind.CONTEXT:
            if token.token == ")":
                depth += 1
            elif token.token == "(":
                if depth == 0:
                    return formula[token.source_end + 1 : bar.source_start].strip()
                depth -= 1
    raise FormulaError("unbalanced parentheses around a random-effects term")
