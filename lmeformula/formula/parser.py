"""Tokenizer and precedence-climbing parser for R formulas (``tokenize -> parse``).

Only the expression subset that formulas use is accepted: names (also back-quoted), numbers,
strings, calls with positional and named arguments, parentheses, and R's unary and binary
operators with R's precedence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import FormulaError
from .ast import (
    UNARY_PRECEDENCE,
    BinOp,
    Call,
    Name,
    Node,
    Paren,
    Str,
    UnaryOp,
    number,
    precedence,
)
from .limits import check_nesting, recursion_room

__all__ = ["Token", "parse_expression", "parse_formula", "tokenize"]


@dataclass(frozen=True)
class Token:
    """One lexical token: ``kind`` is name, number, string, op, '(', ')', ',' or '='."""

    kind: str
    text: str
    pos: int


_OPERATORS = ["||", "&&", "==", "!=", "<=", ">=", "**", "|", "&", "~", "+", "-", "*", "/",
              ":", "^", "<", ">", "!"]
_NUMBER = re.compile(r"(0[xX][0-9a-fA-F]+|(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?)(L?)")
# R's names: letters (any alphabet, as R in a UTF-8 locale) or '.', then letters, digits,
# '.' and '_'
_NAME = re.compile(r"(?:[^\W\d_]|\.)[\w.]*")
_NAMESPACED = re.compile(r":::?(?:[^\W\d_]|\.)[\w.]*")
_DIGITS = "0123456789"


def tokenize(text: str) -> list[Token]:
    """Split formula text into tokens, respecting quotes, back-ticks and ``%op%`` operators."""
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        if ch in "\"'":
            j = i + 1
            buf = []
            while j < n and text[j] != ch:
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                buf.append(text[j])
                j += 1
            if j >= n:
                raise FormulaError(f"unterminated string in formula: {text!r}")
            tokens.append(Token("string", "".join(buf), i))
            i = j + 1
            continue
        if ch == "`":
            j = text.find("`", i + 1)
            if j < 0:
                raise FormulaError(f"unterminated back-quoted name in formula: {text!r}")
            tokens.append(Token("name", text[i + 1 : j], i))
            i = j + 1
            continue
        if ch == "%":
            j = text.find("%", i + 1)
            if j < 0:
                raise FormulaError(f"unterminated %operator% in formula: {text!r}")
            tokens.append(Token("op", text[i : j + 1], i))
            i = j + 1
            continue
        if ch in _DIGITS or (ch == "." and i + 1 < n and text[i + 1] in _DIGITS):
            m = _NUMBER.match(text, i)
            if m is None:  # pragma: no cover - the regex matches any digit
                raise FormulaError(f"malformed number at position {i} in formula: {text!r}")
            tokens.append(Token("number", m.group(0), i))
            i = m.end()
            continue
        m = _NAME.match(text, i)
        if m is not None:
            end = m.end()
            # R's namespace operators: pkg::fn and pkg:::fn are one name (splines::ns(x, 3)),
            # deparsed as written; the evaluator resolves the packages it knows
            ns = _NAMESPACED.match(text, end)
            if ns is not None:
                end = ns.end()
            tokens.append(Token("name", text[i:end], i))
            i = end
            continue
        if ch in "(),[]":
            tokens.append(Token(ch, ch, i))
            i += 1
            continue
        if ch == "=" and not text.startswith("==", i):
            tokens.append(Token("=", "=", i))
            i += 1
            continue
        for op in _OPERATORS:
            if text.startswith(op, i):
                tokens.append(Token("op", "^" if op == "**" else op, i))
                i += len(op)
                break
        else:
            raise FormulaError(f"unexpected character {ch!r} in formula: {text!r}")
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    def peek(self) -> Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> Token:
        tok = self.peek()
        if tok is None:
            raise FormulaError(f"unexpected end of formula: {self.text!r}")
        self.i += 1
        return tok

    def expect(self, kind: str) -> Token:
        tok = self.take()
        if tok.kind != kind:
            raise FormulaError(
                f"unexpected {tok.text!r} at position {tok.pos} in formula: {self.text!r}"
            )
        return tok

    def parse(self) -> Node:
        node = self.expression(0)
        tok = self.peek()
        if tok is not None:
            raise FormulaError(
                f"unexpected {tok.text!r} at position {tok.pos} in formula: {self.text!r}"
            )
        return node

    def expression(self, min_prec: int) -> Node:
        left = self.prefix()
        while True:
            tok = self.peek()
            if tok is None or tok.kind != "op" or tok.text == "!":
                return left
            prec = precedence(tok.text)
            if prec < min_prec:
                return left
            self.take()
            next_min = prec if tok.text == "^" else prec + 1
            right = self.expression(next_min)
            left = BinOp(tok.text, left, right)

    def prefix(self) -> Node:
        node = self.primary()
        while (tok := self.peek()) is not None and tok.kind == "[":  # x[i], R's `[`(x, i)
            self.take()
            node = Call("[", ((None, node), *self.arguments("]")))
        return node

    def primary(self) -> Node:
        tok = self.take()
        if tok.kind == "op" and tok.text in UNARY_PRECEDENCE:
            operand = self.expression(UNARY_PRECEDENCE[tok.text])
            return UnaryOp(tok.text, operand)
        if tok.kind == "(":
            inner = self.expression(0)
            self.expect(")")
            return Paren(inner)
        if tok.kind == "number":
            return _number_node(tok.text)
        if tok.kind == "string":
            return Str(tok.text)
        if tok.kind == "name":
            nxt = self.peek()
            if nxt is not None and nxt.kind == "(":
                self.take()
                return Call(tok.text, self.arguments())
            if tok.text in ("TRUE", "FALSE", "T", "F"):
                return Name(tok.text)
            return Name(tok.text)
        raise FormulaError(
            f"unexpected {tok.text!r} at position {tok.pos} in formula: {self.text!r}"
        )

    def arguments(self, close: str = ")") -> tuple[tuple[str | None, Node], ...]:
        args: list[tuple[str | None, Node]] = []
        first = self.peek()
        if first is not None and first.kind == close:
            self.take()
            return ()
        while True:
            name: str | None = None
            tok = self.peek()
            if (
                tok is not None
                and tok.kind == "name"
                and self.i + 1 < len(self.tokens)
                and self.tokens[self.i + 1].kind == "="
            ):
                name = tok.text
                self.i += 2
            args.append((name, self.expression(0)))
            tok = self.take()
            if tok.kind == close:
                return tuple(args)
            if tok.kind != ",":
                raise FormulaError(
                    f"unexpected {tok.text!r} at position {tok.pos} in formula: {self.text!r}"
                )


def _number_node(text: str) -> Node:
    if text.endswith("L"):
        return number(float(int(text[:-1], 0)), text)
    if text.lower().startswith("0x"):
        return number(float(int(text, 16)))
    return number(float(text))


def parse_expression(text: str) -> Node:
    """Parse R expression text into a syntax tree."""
    if not text.strip():
        raise FormulaError("empty formula")
    parser = _Parser(text)
    check_nesting([t.kind for t in parser.tokens], text)
    with recursion_room(len(parser.tokens)):  # unary chains (- - - x) recurse in the parser
        return parser.parse()


def parse_formula(text: str) -> tuple[Node | None, Node]:
    """Parse ``"lhs ~ rhs"`` (or ``"~ rhs"``) into (lhs or None, rhs)."""
    if not isinstance(text, str):
        raise FormulaError(f"formula must be a string, not {type(text).__name__}")
    node = parse_expression(text)
    if isinstance(node, BinOp) and node.op == "~":
        return node.left, node.right
    if isinstance(node, UnaryOp) and node.op == "~":
        return None, node.operand
    raise FormulaError(f"not a formula (no '~'): {text!r}")
