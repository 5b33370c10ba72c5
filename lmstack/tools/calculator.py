"""A safe calculator: arithmetic parsed with ``ast`` against a whitelist, never ``eval``.

Every operation is bounded before it runs, so no expression of at most ``MAX_LENGTH`` characters can hang or
exhaust memory: numbers (inputs and every intermediate result) stay finite and within ``MAX_MAGNITUDE`` (so an
integer has at most 101 digits), an exponent within ``MAX_EXPONENT`` and the result's size, ``round``'s
``ndigits`` within ``MAX_NDIGITS``, and the whole evaluation within ``MAX_SECONDS``. A value that is not a finite
real number (``1e999 - 1e999``, ``(-8) ** 0.5``) is refused, never returned.
"""

from __future__ import annotations

import ast
import math
import operator
import time

from lmstack.errors import LmstackError

MAX_LENGTH, MAX_EXPONENT, MAX_MAGNITUDE, MAX_NDIGITS, MAX_SECONDS = 200, 64, 1e100, 30, 0.5
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.Pow: operator.pow, ast.Mod: operator.mod, ast.FloorDiv: operator.floordiv}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}


def _round(x: float | int, ndigits: int | None = None) -> float | int:
    if ndigits is not None and (type(ndigits) is not int or abs(ndigits) > MAX_NDIGITS):
        raise ValueError(f"round's ndigits must be an integer in [-{MAX_NDIGITS}, {MAX_NDIGITS}], got {ndigits}")
    return round(x) if ndigits is None else round(x, ndigits)


_FUNCTIONS = {"sqrt": math.sqrt, "log": math.log, "log10": math.log10, "exp": math.exp, "sin": math.sin,
              "cos": math.cos, "tan": math.tan, "abs": abs, "round": _round, "min": min, "max": max}
_CONSTANTS = {"pi": math.pi, "e": math.e}
_SPELLINGS = {"×": "*", "÷": "/", "^": "**", "（": "(", "）": ")", "，": ","}


def calculate(expression: str) -> float | int:
    """The value of an arithmetic expression, parsed with ``ast`` against a whitelist (never ``eval``).

    Raises ``LmstackError`` for anything else: names, attributes, strings, numbers beyond ``MAX_MAGNITUDE``
    (inputs, intermediate values or the result), exponents beyond ``MAX_EXPONENT``, ``round`` to more than
    ``MAX_NDIGITS`` digits, results that are not finite real numbers, or an evaluation past ``MAX_SECONDS``.
    """
    if not isinstance(expression, str):
        raise LmstackError(f"the expression must be a string, got {type(expression).__name__}")
    if len(expression) > MAX_LENGTH:
        raise LmstackError(f"expression longer than {MAX_LENGTH} characters")
    for written, meant in _SPELLINGS.items():
        expression = expression.replace(written, meant)
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        raise LmstackError(f"not an arithmetic expression: {expression!r}") from e
    try:
        return _evaluate(tree.body, time.monotonic() + MAX_SECONDS)
    except (ArithmeticError, ValueError, TypeError, RecursionError) as e:
        raise LmstackError(f"cannot evaluate {expression!r}: {e}") from e


def _evaluate(node: ast.AST, deadline: float) -> float | int:
    if time.monotonic() > deadline:
        raise ArithmeticError(f"took longer than {MAX_SECONDS} s")
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return _checked(node.value)
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand, deadline))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left, deadline), _evaluate(node.right, deadline)
        if isinstance(node.op, ast.Pow):
            _check_power(left, right)
        return _checked(_BINARY[type(node.op)](left, right))
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS
            and not node.keywords and node.args):
        return _checked(_FUNCTIONS[node.func.id](*(_evaluate(a, deadline) for a in node.args)))
    raise ValueError(f"{ast.unparse(node)!r} is not allowed")


def _check_power(base: float | int, exponent: float | int) -> None:
    """Refuse ``base ** exponent`` before computing it when the exponent, or the result, would be too large."""
    if abs(exponent) > MAX_EXPONENT:
        raise ValueError(f"exponent {exponent} is too large (at most {MAX_EXPONENT})")
    if abs(base) > 1 and exponent > 0 and exponent * math.log10(abs(base)) > math.log10(MAX_MAGNITUDE):
        raise ValueError(f"{base} ** {exponent} is out of range (at most {MAX_MAGNITUDE:g})")


def _checked(value: object) -> float | int:
    """``value`` if it is a finite real number within ``MAX_MAGNITUDE``; else a clear error."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"the result {value!r} is not a real number")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"the result is not a finite number ({value})")
    if abs(value) > MAX_MAGNITUDE:
        raise ValueError(f"the result is out of range (at most {MAX_MAGNITUDE:g} in magnitude)")
    return value


def format_number(value: float | int) -> str:
    """449 for 449.0, 0.333333333333 for 1/3: what the calculator tool answers."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        value = int(value)
    return str(value) if isinstance(value, int) else f"{value:.12g}"
