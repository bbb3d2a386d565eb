"""Formulas typed as text (``"sigmoid(w*x + b)"``), turned into Value graphs safely.

The text is parsed by Python's ``ast`` module and walked against an allow-list: numbers,
variables, ``+ - * / **``, unary ``-`` and ``+``, parentheses and calls of the registry's ops
that have a function name (:func:`functions`: exp, log, ..., step, sign, and every op made with
``define_op``).
Nothing is ever passed to ``eval``; anything else is a :class:`FormulaError` that names the
offending token and its column.

    >>> from microgd.app.formula import parse
    >>> out = parse("sigmoid(w*x + b)", {"w": 0.5, "x": 1.0, "b": 0.0})
    >>> out.backward()
    >>> round(out.data, 6), sorted((v.label, round(v.grad, 6)) for v in out.topo() if v.label)
    (0.622459, [('b', 0.235004), ('w', 0.235004), ('x', 0.117502)])
"""

from __future__ import annotations

import ast
import bisect
import io
import itertools
import keyword
import math
import operator
import tokenize
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any, Union

from .. import checks
from ..engine import DomainError, Value
from ..rules import OPS, Op

__all__ = ["parse", "compile", "Formula", "FormulaError", "functions", "normal_name"]

Number = Union[int, float]


def functions() -> dict[str, Op]:
    """The functions a formula may call, by name: the registry's ops written ``name(...)``."""
    return {name: op for name, op in OPS.items() if op.function}

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.Pow: operator.pow}
_UNARY = {ast.USub: operator.neg, ast.UAdd: lambda v: v}
# operators outside the allow-list, by the symbol the user typed
_REFUSED_SYMBOLS = {ast.FloorDiv: "//", ast.Mod: "%", ast.MatMult: "@", ast.LShift: "<<", ast.RShift: ">>",
                    ast.BitOr: "|", ast.BitXor: "^", ast.BitAnd: "&", ast.Eq: "==", ast.NotEq: "!=",
                    ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Is: "is", ast.IsNot: "is",
                    ast.In: "in", ast.NotIn: "not", ast.And: "and", ast.Or: "or", ast.Not: "not",
                    ast.Invert: "~"}
_REFUSED_NODES = {ast.Attribute: "attribute access", ast.Subscript: "subscript", ast.Lambda: "lambda",
                  ast.IfExp: "conditional expression", ast.NamedExpr: "assignment", ast.Tuple: "tuple",
                  ast.List: "list", ast.Dict: "dict", ast.Set: "set", ast.ListComp: "comprehension",
                  ast.SetComp: "comprehension", ast.DictComp: "comprehension", ast.GeneratorExp: "generator",
                  ast.JoinedStr: "f-string", ast.Starred: "argument unpacking", ast.Await: "await",
                  ast.Yield: "yield", ast.YieldFrom: "yield", ast.Slice: "slice"}


def _allowed() -> str:
    return "allowed: numbers, variables, + - * / ** and unary -, ( ), " + " ".join(functions())


def _function_list() -> str:
    return "functions: " + " ".join(functions())


class FormulaError(ValueError):
    """A formula outside the allow-list or not well formed; names the token and where it is.

    ``token`` is the offending text, ``line`` and ``column`` its 1-based position (None when
    the error is not about one place in the text, e.g. a bad variable name).
    """

    def __init__(self, message: str, token: str = "", line: int | None = None, column: int | None = None):
        super().__init__(message)
        self.token, self.line, self.column = token, line, column


class _Source:
    """The text and its positions: ast's (line, byte column) <-> offsets <-> 'column C' for messages."""

    def __init__(self, text: str):
        self.text = text.replace("\r\n", "\n").replace("\r", "\n")
        self.code = self.text.lstrip()  # ast refuses leading blanks ("unexpected indent")
        self.skip = len(self.text) - len(self.code)
        self.text_starts = self._line_starts(self.text)
        self.code_lines = self.code.split("\n")
        self.code_starts = self._line_starts(self.code)
        self.multiline = "\n" in self.text.strip()
        self.ascii = self.code.isascii()
        self.normal = unicodedata.is_normalized("NFKC", self.code)  # then every name reads as typed

    @staticmethod
    def _line_starts(text: str) -> list[int]:
        starts = [0]
        starts.extend(i + 1 for i, c in enumerate(text) if c == "\n")
        return starts

    def offset(self, lineno: int, byte_col: int) -> int:
        """Offset in ``text`` of an ast position in ``code``."""
        if self.ascii:  # a byte is a character
            return self.skip + self.code_starts[lineno - 1] + byte_col
        line = self.code_lines[lineno - 1]
        return self.skip + self.code_starts[lineno - 1] + len(line.encode()[:byte_col].decode(errors="ignore"))

    def where(self, offset: int) -> tuple[int, int]:
        line = bisect.bisect_right(self.text_starts, offset)
        return line, offset - self.text_starts[line - 1] + 1

    def place(self, offset: int) -> str:
        line, column = self.where(offset)
        return f"line {line}, column {column}" if self.multiline else f"column {column}"

    def error(self, message: str, token: str, offset: int, hint: str = "") -> FormulaError:
        """``message at column C (hint)``, carrying the token and its position."""
        line, column = self.where(offset)
        hint = f" ({hint})" if hint else ""
        return FormulaError(f"{message} at {self.place(offset)}{hint}", token, line, column)

    def start(self, node: ast.AST) -> int:
        return self.offset(node.lineno, node.col_offset)  # type: ignore[attr-defined]  # every node parsed has one

    def end(self, node: ast.AST) -> int:
        return self.offset(node.end_lineno, node.end_col_offset)  # type: ignore[attr-defined]

    def segment(self, node: ast.AST, limit: int = 40) -> str:
        text = self.text[self.start(node):self.end(node)]
        return text if len(text) <= limit else text[:limit - 3] + "..."

    def find(self, symbol: str, after: ast.AST, before: ast.AST | None = None) -> int:
        """Offset of ``symbol`` between two nodes (an operator sits between its operands)."""
        start = self.end(after)
        stop = self.start(before) if before is not None else len(self.text)
        found = self.text.find(symbol, start, stop)
        return found if found >= 0 else start


# -- what Python's parser cannot take whole: long chains, integers of thousands of digits ------------

_CHAINS: tuple[dict[str, type[ast.operator]], ...] = ({"+": ast.Add, "-": ast.Sub}, {"*": ast.Mult, "/": ast.Div})
_FLOAT_DIGITS = 309  # an integer with more digits is beyond any float


def _tokens(text: str) -> list[tokenize.TokenInfo]:
    """Python's tokens of ``text``, without the layout ones."""
    layout = (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER)
    return [t for t in tokenize.generate_tokens(io.StringIO(text).readline) if t.type not in layout]


def _long_integer(source: _Source) -> FormulaError | None:
    """An integer literal too long for Python to read (its digit limit makes it a SyntaxError), named."""
    try:
        tokens = _tokens(source.code)
    except (tokenize.TokenError, SyntaxError):
        return None
    for token in tokens:
        digits = token.string.replace("_", "")
        if token.type == tokenize.NUMBER and digits.isdigit() and len(digits) > _FLOAT_DIGITS:
            row, column = token.start
            at = source.skip + source.code_starts[row - 1] + column
            shown = token.string if len(token.string) <= 40 else token.string[:37] + "..."
            return source.error(f"number {shown!r} ({len(digits)} digits) is too large for a float", token.string, at)
    return None


def _parse_chain(source: _Source) -> ast.expr:
    """A formula Python's parser finds too deep: a long flat chain such as ``x1 + x2 + ... + x3000`` (or of
    ``*`` and ``/``) is split where its operators sit outside brackets, each operand parsed alone, and the
    operands joined left to right as Python would. Anything else that deep is a FormulaError."""
    try:
        return _Chain(source.code).parse(0, len(source.code), 0)
    except (RecursionError, MemoryError):
        raise FormulaError(f"formula is nested too deeply to parse ({len(source.text)} characters): brackets, "
                           "signs, ** or calls inside one another beyond what Python's parser takes") from None


class _Chain:
    """Parses ``code`` piece by piece, each piece's tree placed where it sits in ``code`` (ast positions:
    1-based lines, columns in UTF-8 bytes)."""

    def __init__(self, code: str) -> None:
        self.code = code
        self.lines = _Source._line_starts(code)
        self.bytes_before = None if code.isascii() else [0, *itertools.accumulate(len(c.encode()) for c in code)]

    def parse(self, start: int, end: int, level: int) -> ast.expr:
        """``code[start:end]`` parsed and placed; if too deep, split at the chain of ``level`` and joined."""
        text = self.code[start:end]
        start, end = start + len(text) - len(text.lstrip()), start + len(text.rstrip())
        try:
            return self._placed(ast.parse(self.code[start:end], mode="eval").body, start)
        except RecursionError:
            if level == len(_CHAINS):
                raise
        operators = _CHAINS[level]
        cuts = [(start + at, start + after, op) for at, after, op in _cuts(self.code[start:end], operators)]
        if not cuts:
            return self.parse(start, end, level + 1)
        starts, ends = [start, *(after for _, after, _ in cuts)], [*(at for at, _, _ in cuts), end]
        operands = [self.parse(a, b, level + 1) for a, b in zip(starts, ends)]
        node = operands[0]
        for (_, _, symbol), right in zip(cuts, operands[1:]):
            node = ast.BinOp(node, operators[symbol](), right, lineno=node.lineno, col_offset=node.col_offset,
                             end_lineno=right.end_lineno, end_col_offset=right.end_col_offset)
        return node

    def _placed(self, tree: ast.expr, start: int) -> ast.expr:
        """``tree``, parsed from the text at ``start``, with its positions moved to that place."""
        line = bisect.bisect_right(self.lines, start) - 1
        first = self.lines[line]
        shift = start - first if self.bytes_before is None else self.bytes_before[start] - self.bytes_before[first]
        for node in ast.walk(tree):
            if hasattr(node, "lineno"):  # expressions, keywords, lambda arguments
                placed: Any = node
                if placed.lineno == 1:
                    placed.col_offset += shift
                if placed.end_lineno == 1:
                    placed.end_col_offset += shift
                placed.lineno += line
                placed.end_lineno += line
        return tree


def _cuts(text: str, operators: Mapping[str, type]) -> list[tuple[int, int, str]]:
    """Where ``text`` has one of ``operators`` as a binary operator outside brackets: (start, end, symbol)."""
    lines = _Source._line_starts(text)
    cuts, depth, previous = [], 0, None
    for token in _tokens(text):
        if token.string in ("(", "[", "{"):
            depth += 1
        elif token.string in (")", "]", "}"):
            depth -= 1
        elif depth == 0 and token.type == tokenize.OP and token.string in operators and _ends_operand(previous):
            (row, column), (_, after) = token.start, token.end
            cuts.append((lines[row - 1] + column, lines[row - 1] + after, token.string))
        previous = token
    return cuts


def _ends_operand(token: tokenize.TokenInfo | None) -> bool:
    """Whether an operator after ``token`` is binary (``x - y``), not a sign (``x * -y``)."""
    if token is None:
        return False
    if token.type == tokenize.NAME:
        return not keyword.iskeyword(token.string)
    return token.type in (tokenize.NUMBER, tokenize.STRING) or token.string in (")", "]", "}")


def _syntax_error(source: _Source, error: SyntaxError) -> FormulaError:
    lineno, offset = error.lineno or 1, error.offset or 0
    line = source.code_lines[min(lineno, len(source.code_lines)) - 1]
    if offset < 1 or offset > len(line):
        at = source.skip + source.code_starts[min(lineno, len(source.code_lines)) - 1] + len(line)
        return source.error("syntax error: the formula ends too early", "", at)
    at = source.skip + source.code_starts[lineno - 1] + offset - 1
    token = _token_at(line, offset - 1)
    if error.msg.startswith("invalid syntax"):
        return source.error(f"syntax error: unexpected {token!r}", token, at)
    return source.error(f"syntax error: {token!r}", token, at, error.msg)


def _token_at(line: str, i: int) -> str:
    """The word, number or operator starting at ``line[i]``."""
    j = i + 1
    if line[i].isalnum() or line[i] in "_.":
        while j < len(line) and (line[j].isalnum() or line[j] in "_."):
            j += 1
    elif line[i:i + 2] in ("**", "//", "==", "!=", "<=", ">=", "<<", ">>", ":="):
        j = i + 2
    return line[i:j]


class Formula:
    """A checked formula, ready to evaluate: ``Formula(...)(w=0.5, x=1.0)`` returns a Value.

    Build one with :func:`compile`. ``names`` are the variables it uses, in order of first
    appearance. Calling it takes one number or Value per name (extra names are ignored);
    numbers become leaf Values labelled with their name, and one variable used twice is one
    Value, so its gradient sums both uses.
    """

    def __init__(self, text: str, names: tuple[str, ...], program: list, source: _Source):
        self.text, self.names = text, names
        self._program, self._source = program, source

    def __call__(self, **values: Number | Value) -> Value:
        missing = [name for name in self.names if name not in values]
        if missing:
            raise TypeError(f"formula {self.text!r} needs a value for {', '.join(map(repr, missing))}")
        leaves = {name: v if isinstance(v, Value) else Value(v, label=name)
                  for name, v in values.items() if name in self.names}
        stack: list = []
        for kind, arg, node in self._program:  # postfix: operands are on the stack before their op
            if kind == "var":
                stack.append(leaves[arg])
                continue
            if kind == "num":
                stack.append(arg)
                continue
            count = 2 if kind == "binary" else 1 if kind == "unary" else len(node.args)
            operands = stack[-count:]
            del stack[-count:]
            try:
                if kind != "call" and not any(isinstance(o, Value) for o in operands):
                    operands[0] = Value(operands[0])  # fold constants, with the engine's checks
                    stack.append(arg(*operands).data)
                else:
                    stack.append(arg(*operands))  # a registry op: on numbers it folds, checked
            except DomainError as error:
                source = self._source
                raise DomainError(f"{error} (in {source.segment(node)!r} at {source.place(source.start(node))})") \
                    from error
        result = stack.pop()
        return result if isinstance(result, Value) else Value(result)

    def __repr__(self) -> str:
        return f"Formula({self.text!r}, names={self.names!r})"


def compile(text: str, names: Iterable[str] | None = None) -> Formula:
    """Check ``text`` against the allow-list and return a :class:`Formula` to evaluate.

    ``names`` are the allowed variable names; ``None`` allows any name that is not a function.

        >>> f = compile("(y - z)**2 / 2")
        >>> f.names, f(y=0.8, z=0.3).data
        (('y', 'z'), 0.125)
    """
    if not isinstance(text, str):
        raise TypeError(f"a formula is text, got {type(text).__name__}: {text!r}")
    allowed = None if names is None else _check_names(names)
    source = _Source(text)
    for bad in ("\x00", "#"):
        if bad in source.text:
            what = "a null byte" if bad == "\x00" else "'#' (comments are not part of a formula)"
            raise source.error(f"formula contains {what}", bad, source.text.index(bad))
    try:
        source.text.encode("utf-8")
    except UnicodeEncodeError as error:  # bytes of an argument that were not UTF-8 (surrogateescape)
        bad = source.text[error.start]
        byte = ord(bad) - 0xDC00
        what = f"the byte {byte:#04x} (not UTF-8 text)" if 0x80 <= byte <= 0xFF else f"{bad!r} (half a surrogate pair)"
        raise source.error(f"formula holds {what}", bad, error.start) from None
    if not source.code.strip():
        raise FormulaError("empty formula: write an expression such as 'sigmoid(w*x + b)'")
    try:
        tree = ast.parse(source.code, mode="eval").body
    except SyntaxError as error:
        raise _long_integer(source) or _syntax_error(source, error) from None
    except (RecursionError, MemoryError):  # deeper than Python's parser goes: a long chain, parsed link by link
        tree = _parse_chain(source)
    program: list = []
    used: dict[str, None] = {}
    stack: list = [(tree, False)]
    while stack:  # iterative post-order walk: no recursion limit on long formulas
        node, children_done = stack.pop()
        if children_done:
            program.append(_step(node))
            continue
        children = _check_node(node, source, allowed)
        if isinstance(node, ast.Name):
            used[node.id] = None
        stack.append((node, True))
        stack.extend((child, False) for child in reversed(children))
    return Formula(text, tuple(used), program, source)


def normal_name(name: str) -> str:
    """``name`` as Python's parser reads it in a formula (NFKC): ``normal_name("ｘ") == "x"``."""
    return unicodedata.normalize("NFKC", name)


def parse(text: str, variables: Mapping[str, Number | Value]) -> Value:
    """Evaluate the formula ``text`` on ``variables`` (name -> number) into a Value graph.

    Each variable becomes a leaf Value labelled with its name, so after ``backward()``
    its ``.grad`` holds d formula / d variable. Constants are folded.

        >>> out = parse("(y - z)**2 / 2", {"y": 0.8, "z": 0.3})
        >>> out.backward(); out.data, sorted((v.label, v.grad) for v in out.topo() if v.label)
        (0.125, [('y', 0.5), ('z', -0.5)])
    """
    return compile(text, variables.keys())(**variables)


def _check_names(names: Iterable[str]) -> frozenset[str]:
    names = list(names)
    for name in names:
        if not isinstance(name, str) or not name.isidentifier():
            raise FormulaError(f"variable name {name!r} is not a name (letters, digits and _, not first a digit)",
                               str(name))
        if normal_name(name) != name:
            raise FormulaError(f"variable name {name!r} is read by Python as {normal_name(name)!r} in a formula "
                               "(Unicode NFKC normalisation): use that name", name)
        if name in functions():
            raise FormulaError(f"variable name {name!r} is taken by the function {name}()", name)
    return frozenset(names)


def _check_node(node: ast.AST, source: _Source, allowed: frozenset[str] | None) -> list:
    """The children to walk if ``node`` is on the allow-list; a FormulaError naming it otherwise."""
    if isinstance(node, ast.BinOp):
        if type(node.op) not in _BINARY:
            symbol = _REFUSED_SYMBOLS[type(node.op)]
            raise source.error(f"operator {symbol!r} is not allowed", symbol,
                               source.find(symbol, node.left, node.right), _allowed())
        return [node.left, node.right]
    if isinstance(node, ast.UnaryOp):
        if type(node.op) not in _UNARY:
            symbol = _REFUSED_SYMBOLS[type(node.op)]
            raise source.error(f"operator {symbol!r} is not allowed", symbol, source.start(node), _allowed())
        return [node.operand]
    if isinstance(node, ast.Constant):
        return _check_number(node, source)
    if isinstance(node, ast.Name):
        _check_spelling(node, source)
        if node.id in functions():
            raise source.error(f"function {node.id!r} without arguments", node.id, source.start(node),
                               f"call it: {node.id}(x)")
        if allowed is not None and node.id not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise source.error(f"unknown name {node.id!r}", node.id, source.start(node),
                               f"variables: {known}; {_function_list()}")
        return []
    if isinstance(node, ast.Call):
        return _check_call(node, source, allowed)
    if isinstance(node, (ast.Compare, ast.BoolOp)):
        first = node.ops[0] if isinstance(node, ast.Compare) else node.op
        left = node.left if isinstance(node, ast.Compare) else node.values[0]
        right = node.comparators[0] if isinstance(node, ast.Compare) else node.values[1]
        symbol = _REFUSED_SYMBOLS[type(first)]
        raise source.error(f"operator {symbol!r} is not allowed", symbol, source.find(symbol, left, right), _allowed())
    if isinstance(node, (ast.Attribute, ast.Subscript)):
        symbol = "." if isinstance(node, ast.Attribute) else "["
        at = source.find(symbol, node.value)
        token = f".{node.attr}" if isinstance(node, ast.Attribute) else source.text[at:source.end(node)]
        raise source.error(f"{_REFUSED_NODES[type(node)]} {token!r} is not allowed", token, at, _allowed())
    what = _REFUSED_NODES.get(type(node), type(node).__name__)
    token = source.segment(node)
    raise source.error(f"{what} {token!r} is not allowed", token, source.start(node), _allowed())


def _check_spelling(node: ast.Name, source: _Source) -> None:
    """A name exactly as typed: Python's parser reads ``ｘ`` (fullwidth) or ``ﬁ`` as ``x`` or ``fi`` (NFKC), which
    would silently make two names one."""
    if source.normal:
        return
    typed = source.text[source.start(node):source.end(node)]
    if typed != node.id:
        raise source.error(f"name {typed!r} is read by Python as {node.id!r} (Unicode NFKC normalisation)", typed,
                           source.start(node), f"type {node.id!r} if you mean it, else another name")


def _check_number(node: ast.Constant, source: _Source) -> list:
    value = node.value
    token = source.segment(node)
    if not checks.is_real(value):
        what = {str: "string", bytes: "bytes", complex: "complex number"}.get(type(value), "constant")
        raise source.error(f"{what} {token!r} is not allowed", token, source.start(node), _allowed())
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise source.error(f"number {token!r} is too large for a float", token, source.start(node))
    return []


def _check_call(node: ast.Call, source: _Source, allowed: frozenset[str] | None) -> list:
    if not isinstance(node.func, ast.Name):
        if isinstance(node.func, ast.Attribute):
            _check_node(node.func, source, allowed)  # raises: attribute access
        token = source.segment(node.func)
        raise source.error(f"call of {token!r} is not allowed", token, source.start(node.func), _function_list())
    _check_spelling(node.func, source)
    name = node.func.id
    op = functions().get(name)
    if op is None:
        is_variable = allowed is not None and name in allowed
        what = f"{name!r} is a variable, not a function" if is_variable else f"unknown function {name!r}"
        raise source.error(what, name, source.start(node.func), _function_list())
    for argument in node.keywords:
        token = "**" if argument.arg is None else f"{argument.arg}="
        raise source.error(f"keyword argument {token!r} is not allowed", token,
                           source.offset(argument.lineno, argument.col_offset), f"{name}() takes {_count(op)}")
    for arg in node.args:
        if isinstance(arg, ast.Starred):
            raise source.error(f"argument unpacking '*' is not allowed in {name}()", "*", source.start(arg))
    if op.arity is not None and len(node.args) != op.arity:
        raise source.error(f"function {name!r} takes {_count(op)}, got {len(node.args)}", name,
                           source.start(node.func))
    return list(node.args)


def _count(op: Op) -> str:
    return "any number of arguments" if op.arity is None else f"{op.arity} argument{'s' if op.arity > 1 else ''}"


def _step(node: ast.AST) -> tuple:
    """The postfix instruction for a checked node: (kind, argument, node for error messages)."""
    if isinstance(node, ast.Name):
        return ("var", node.id, node)
    if isinstance(node, ast.Constant):
        return ("num", float(node.value), node)  # type: ignore[arg-type]  # checked: an int or a float
    if isinstance(node, ast.BinOp):
        return ("binary", _BINARY[type(node.op)], node)
    if isinstance(node, ast.UnaryOp):
        return ("unary", _UNARY[type(node.op)], node)
    assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)  # the allow-list admits nothing else
    return ("call", OPS[node.func.id], node)
