"""A safe calculator: arithmetic parsed with ``ast`` against a whitelist, never ``eval``."""

from __future__ import annotations

import ast
import math
import operator

from lmstack.errors import LmstackError

MAX_LENGTH, MAX_EXPONENT, MAX_MAGNITUDE = 200, 64, 1e100
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.Pow: operator.pow, ast.Mod: operator.mod, ast.FloorDiv: operator.floordiv}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS = {"sqrt": math.sqrt, "log": math.log, "log10": math.log10, "exp": math.exp, "sin": math.sin,
              "cos": math.cos, "tan": math.tan, "abs": abs, "round": round, "min": min, "max": max}
_CONSTANTS = {"pi": math.pi, "e": math.e}
_SPELLINGS = {"×": "*", "÷": "/", "^": "**", "（": "(", "）": ")", "，": ","}


def calculate(expression: str) -> float | int:
    """The value of an arithmetic expression, parsed with ``ast`` against a whitelist (never ``eval``).

    Raises ``LmstackError`` for anything else: names, attributes, strings, huge exponents or results.
    """
    if len(expression) > MAX_LENGTH:
        raise LmstackError(f"expression longer than {MAX_LENGTH} characters")
    for written, meant in _SPELLINGS.items():
        expression = expression.replace(written, meant)
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, RecursionError) as e:
        raise LmstackError(f"not an arithmetic expression: {expression!r}") from e
    try:
        value = _evaluate(tree.body)
    except (ArithmeticError, ValueError, TypeError) as e:
        raise LmstackError(f"cannot evaluate {expression!r}: {e}") from e
    if isinstance(value, complex) or abs(value) > MAX_MAGNITUDE:
        raise LmstackError(f"the result of {expression!r} is out of range")
    return value


def _evaluate(node: ast.AST) -> float | int:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and (abs(right) > MAX_EXPONENT or abs(left) > MAX_MAGNITUDE):
            raise ValueError(f"exponent {right} is too large (at most {MAX_EXPONENT})")
        value = _BINARY[type(node.op)](left, right)
        if abs(value) > MAX_MAGNITUDE:
            raise ValueError("intermediate result out of range")
        return value
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS
            and not node.keywords and node.args):
        return _FUNCTIONS[node.func.id](*(_evaluate(a) for a in node.args))
    raise ValueError(f"{ast.unparse(node)!r} is not allowed")


def format_number(value: float | int) -> str:
    """449 for 449.0, 0.333333333333 for 1/3: what the calculator tool answers."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        value = int(value)
    return str(value) if isinstance(value, int) else f"{value:.12g}"
