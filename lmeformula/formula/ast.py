"""Typed syntax tree for R formulas and R expressions, with R's deparser.

The nodes are frozen dataclasses so that they can be hashed, compared and used as dictionary keys
(two variables are the same variable exactly when their deparsed text is the same, as in R).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "BINARY_PRECEDENCE",
    "RIGHT_ASSOCIATIVE",
    "BinOp",
    "Call",
    "Name",
    "Node",
    "Num",
    "Paren",
    "Str",
    "UnaryOp",
    "deparse",
]


class Node:
    """Base class of every syntax-tree node."""

    def __str__(self) -> str:
        return deparse(self)


@dataclass(frozen=True, eq=True)
class Name(Node):
    """A symbol, such as ``Days`` or a back-quoted `` `my var` ``."""

    id: str

    def __str__(self) -> str:
        return deparse(self)


@dataclass(frozen=True, eq=True)
class Num(Node):
    """A numeric constant; ``text`` is its R deparse (``1e+05``, ``2L``)."""

    value: float
    text: str

    def __str__(self) -> str:
        return deparse(self)


@dataclass(frozen=True, eq=True)
class Str(Node):
    """A string constant."""

    value: str

    def __str__(self) -> str:
        return deparse(self)


@dataclass(frozen=True, eq=True)
class Call(Node):
    """A function call ``fn(arg, ..., name = arg)``; ``args`` holds (name or None, value) pairs."""

    fn: str
    args: tuple[tuple[str | None, Node], ...]

    @property
    def positional(self) -> tuple[Node, ...]:
        """The unnamed arguments, in order."""
        return tuple(v for k, v in self.args if k is None)

    def kwarg(self, name: str) -> Node | None:
        """The argument called ``name``, or None."""
        for k, v in self.args:
            if k == name:
                return v
        return None

    def __str__(self) -> str:
        return deparse(self)


@dataclass(frozen=True, eq=True)
class BinOp(Node):
    """A binary operator: formula (``~ + - * / : ^ | ||``) or arithmetic/comparison."""

    op: str
    left: Node
    right: Node

    def __str__(self) -> str:
        return deparse(self)


@dataclass(frozen=True, eq=True)
class UnaryOp(Node):
    """A prefix operator: ``-x``, ``+x``, ``!x`` or a one-sided ``~ x``."""

    op: str
    operand: Node

    def __str__(self) -> str:
        return deparse(self)


@dataclass(frozen=True, eq=True)
class Paren(Node):
    """Explicit parentheses, kept because R keeps them (``(1 | g)`` is a call to ``(``)."""

    expr: Node

    def __str__(self) -> str:
        return deparse(self)


# R's operator precedence (?Syntax), higher binds tighter.
BINARY_PRECEDENCE: dict[str, int] = {
    "~": 1,
    "||": 2,
    "|": 2,
    "&&": 3,
    "&": 3,
    "==": 5,
    "!=": 5,
    "<": 5,
    ">": 5,
    "<=": 5,
    ">=": 5,
    "+": 6,
    "-": 6,
    "*": 7,
    "/": 7,
    "%%": 8,  # stands for every %op%
    ":": 9,
    "^": 11,
}
UNARY_PRECEDENCE: dict[str, int] = {"~": 1, "!": 4, "-": 10, "+": 10}
RIGHT_ASSOCIATIVE = frozenset({"^"})
# R's deparse writes these operators without surrounding spaces.
_TIGHT_OPS = frozenset({"/", ":", "^"})


def precedence(op: str) -> int:
    """Precedence of a binary operator, ``%any%`` operators included."""
    if op.startswith("%") and op.endswith("%"):
        return BINARY_PRECEDENCE["%%"]
    return BINARY_PRECEDENCE[op]


def format_r_number(value: float, digits: int = 15) -> str:
    """A number as R's ``deparse`` and ``as.character`` write it: up to 15 significant
    digits, in fixed notation unless scientific is shorter (``1e+05``, ``1e-04``, ``0.1``)."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Inf" if value > 0 else "-Inf"
    if value == 0:
        return "0"
    mantissa, exponent = f"{value:.{digits - 1}e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    exp = int(exponent)
    sci = f"{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    sig = len(mantissa.replace("-", "").replace(".", ""))
    decimals = max(0, sig - 1 - exp)
    fixed = f"{value:.{decimals}f}"
    return fixed if len(fixed) <= len(sci) else sci


_format_number = format_r_number


@lru_cache(maxsize=1024)  # names repeat from fit to fit; deparse runs per variable
def _needs_backticks(name: str) -> bool:
    if not name:
        return True
    if not (name[0].isalpha() or name[0] == "." ):
        return True
    if name[0] == "." and len(name) > 1 and name[1].isdigit():
        return True
    return not all(ch.isalnum() or ch in "._" for ch in name)


def deparse(node: Node) -> str:
    """Deparse a syntax tree exactly as R's ``deparse()`` would print it.

    Spaces surround binary operators except ``/``, ``:`` and ``^``; parentheses are added where a
    synthesised tree needs them (``c:(b:a)``), as R does.
    """
    if isinstance(node, Name):
        return f"`{node.id}`" if _needs_backticks(node.id) else node.id
    if isinstance(node, Num):
        return node.text
    if isinstance(node, Str):
        escaped = node.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(node, Paren):
        return f"({deparse(node.expr)})"
    if isinstance(node, Call):
        parts = [deparse(v) if k is None else f"{k} = {deparse(v)}" for k, v in node.args]
        if node.fn == "[" and parts:  # R's x[i]
            return f"{parts[0]}[{', '.join(parts[1:])}]"
        return f"{node.fn}({', '.join(parts)})"
    if isinstance(node, UnaryOp):
        inner = deparse(node.operand)
        if _binding(node.operand) < UNARY_PRECEDENCE[node.op] and not (
            node.op == "~" or isinstance(node.operand, (UnaryOp,))
        ):
            inner = f"({inner})"
        return f"{node.op}{inner}"
    if isinstance(node, BinOp):
        prec = precedence(node.op)
        left, right = deparse(node.left), deparse(node.right)
        lb, rb = _binding(node.left), _binding(node.right)
        if node.op in RIGHT_ASSOCIATIVE:
            if lb <= prec:
                left = f"({left})"
            if rb < prec:
                right = f"({right})"
        else:
            if lb < prec:
                left = f"({left})"
            if rb <= prec:
                right = f"({right})"
        if node.op in _TIGHT_OPS:
            return f"{left}{node.op}{right}"
        return f"{left} {node.op} {right}"
    raise TypeError(f"not a formula node: {node!r}")


def _binding(node: Node) -> int:
    """How tightly a node binds when it appears as an operand."""
    if isinstance(node, BinOp):
        return precedence(node.op)
    if isinstance(node, UnaryOp):
        return UNARY_PRECEDENCE[node.op]
    return 100


def number(value: float, text: str | None = None) -> Num:
    """Make a numeric constant with R's deparse text."""
    return Num(float(value), text if text is not None else _format_number(float(value)))


class _LineDeparser:
    """R's deparse with ``width.cutoff``: a line is broken after a binary operator or an
    argument's comma once it is longer than the cutoff, and continued with 4 spaces per
    indentation level (deparse.c's ``linebreak``)."""

    def __init__(self, cutoff: int) -> None:
        self.cutoff = cutoff
        self.lines: list[str] = []
        self.buf = ""
        self.indent = 0
        self.start = True

    def put(self, text: str) -> None:
        if self.start:
            self.buf += "".join("    " if i < 4 else "  " for i in range(self.indent))
            self.start = False
        self.buf += text

    def linebreak(self, broke: bool) -> bool:
        if len(self.buf) > self.cutoff:
            if not broke:
                broke = True
                self.indent += 1
            self.lines.append(self.buf)
            self.buf = ""
            self.start = True
        return broke

    def walk(self, node: Node) -> None:
        if isinstance(node, (Name, Num, Str)):
            self.put(deparse(node))
        elif isinstance(node, Paren):
            self.put("(")
            self.walk(node.expr)
            self.put(")")
        elif isinstance(node, Call) and node.fn == "[":
            self.put(deparse(node))
        elif isinstance(node, Call):
            self.put(f"{node.fn}(")
            broke = False
            for k, (name, value) in enumerate(node.args):
                if name is not None:
                    self.put(f"{name} = ")
                self.walk(value)
                if k < len(node.args) - 1:
                    self.put(", ")
                    broke = self.linebreak(broke)
            if broke:
                self.indent -= 1
            self.put(")")
        elif isinstance(node, UnaryOp):
            self.put(node.op)
            wrap = _binding(node.operand) < UNARY_PRECEDENCE[node.op] and node.op != "~"
            self.put("(") if wrap else None
            self.walk(node.operand)
            self.put(")") if wrap else None
        elif isinstance(node, BinOp):
            prec = precedence(node.op)
            lb, rb = _binding(node.left), _binding(node.right)
            right_assoc = node.op in RIGHT_ASSOCIATIVE
            wrap_left = lb <= prec if right_assoc else lb < prec
            wrap_right = rb < prec if right_assoc else rb <= prec
            self._operand(node.left, wrap_left)
            if node.op in _TIGHT_OPS:
                self.put(node.op)
                self._operand(node.right, wrap_right)
                return
            self.put(f" {node.op} ")
            broke = self.linebreak(False)
            self._operand(node.right, wrap_right)
            if broke:
                self.indent -= 1
        else:
            raise TypeError(f"not a formula node: {node!r}")

    def _operand(self, node: Node, wrap: bool) -> None:
        if wrap:
            self.put("(")
        self.walk(node)
        if wrap:
            self.put(")")


def deparse_lines(node: Node, cutoff: int = 60) -> list[str]:
    """R's ``deparse(x)`` (``width.cutoff = 60``): the text split into lines as R splits it."""
    d = _LineDeparser(cutoff)
    d.walk(node)
    if d.buf or not d.lines:
        d.lines.append(d.buf)
    return d.lines


def cat_fill(items: list[str], width: int = 80) -> str:
    """R's ``cat(..., fill = TRUE)``: items separated by spaces, a new line started before an
    item that would pass ``width`` with its separator (R counts the space after each item:
    ``"Control: "`` and an item of 71 characters make 81, so the item starts a new line)."""
    out, line = [], ""
    for k, item in enumerate(items):
        if k > 0 and len(line) + len(item) + 1 > width:
            out.append(line)
            line = ""
        line += item + (" " if k < len(items) - 1 else "")
    out.append(line)
    return "\n".join(out)
