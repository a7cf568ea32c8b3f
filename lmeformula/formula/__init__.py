"""R formula syntax: tokenizer, parser, R's deparse, ``terms()`` and lme4's bar tools.

This layer only manipulates syntax; nothing here looks at data.
"""

from .ast import BinOp, Call, Name, Node, Num, Paren, Str, UnaryOp, deparse
from .bars import expand_double_verts, expand_slash, findbars, nobars, subbars
from .parser import parse_expression, parse_formula, tokenize
from .terms import Terms, terms

__all__ = [
    "BinOp",
    "Call",
    "Name",
    "Node",
    "Num",
    "Paren",
    "Str",
    "Terms",
    "UnaryOp",
    "deparse",
    "expand_double_verts",
    "expand_slash",
    "findbars",
    "nobars",
    "parse_expression",
    "parse_formula",
    "subbars",
    "terms",
    "tokenize",
]
