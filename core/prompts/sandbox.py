"""The Jinja sandbox prompts render in, and the checks a template passes before it is saved.

Three layers of defence, because a prompt is written by a tenant admin and rendered inside
the API for every request:

1. At save time the parsed template is walked: names and attributes starting with ``_``,
   ``include``/``import``/``extends``/``block``, ``self`` and filters outside a short list
   are refused, with the line.
2. Rendering runs in an ``ImmutableSandboxedEnvironment`` with ``StrictUndefined``, no
   loader, only allow-listed methods on strings, lists and mappings, and ``str.format``
   turned off.
3. Every render has a budget: loop iterations, calls and filters each cost steps; ``+``,
   ``*``, ``**``, ``~``, ``replace`` and ``join`` refuse results beyond a size; the output
   is capped. So a template that slips past the checks is stopped, not run for minutes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.filters import FILTERS
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from core.prompts.checks import ALLOWED_FILTERS, GLOBALS, ast_problems
from core.prompts.errors import PromptRenderError

__all__ = [
    "MAX_OUTPUT_CHARS",
    "MAX_STEPS",
    "CompiledPart",
    "analyse",
    "checked",
    "compiled",
    "render_part",
    "trial_render",
]

MAX_OUTPUT_CHARS = 100_000
MAX_STEPS = 20_000  # loop iterations + calls + filter applications in one render
MAX_VALUE_SIZE = 100_000  # characters (or items) one expression may build
_MAX_RANGE = 10_000
_MAX_INT_BITS = 4_096
_ITER = "__enclave_iter"
_CONCAT = "__enclave_concat"

# Methods a template may call on strings, lists and mappings: none builds large values.
_SAFE_METHODS = frozenset(
    {
        "lower", "upper", "strip", "lstrip", "rstrip", "title", "capitalize", "startswith",
        "endswith", "split", "rsplit", "splitlines", "count", "find", "rfind", "index",
        "isdigit", "isalpha", "isalnum", "isspace", "islower", "isupper", "get", "items",
        "keys", "values",
    }
)  # fmt: skip


class _Budget:
    """Steps left in one render."""

    __slots__ = ("steps",)

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def charge(self, steps: int = 1) -> None:
        self.steps -= steps
        if self.steps < 0:
            raise SecurityError(f"the template does more than {MAX_STEPS} steps of work")


_BUDGET: ContextVar[_Budget | None] = ContextVar("enclave_prompt_budget", default=None)


def _charge(steps: int = 1) -> None:
    budget = _BUDGET.get()
    if budget is None:
        raise SecurityError("prompt templates render only through core.prompts")
    budget.charge(steps)


def _size(value: Any) -> int:
    # Characters of a string; for a sequence, its items plus its strings' characters.
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list | tuple):
        return len(value) + sum(len(v) for v in value if isinstance(v, str))
    return 1


def _bounded(size: int, what: str) -> None:
    if size > MAX_VALUE_SIZE:
        raise SecurityError(f"{what} would build a value of {size} characters or items")
    _charge(1 + size // 1_000)


def _counted_iter(iterable: Iterable[Any]) -> Iterator[Any]:
    for item in iterable:
        _charge()
        yield item


def _concat(*values: Any) -> str:
    strings = [str(v) for v in values]
    _bounded(sum(len(s) for s in strings), "'~'")
    return "".join(strings)


def _safe_range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > _MAX_RANGE:
        raise SecurityError(f"range() of more than {_MAX_RANGE} numbers")
    return numbers


def _replace(value: Any, old: str, new: str, count: int | None = None) -> str:
    text = str(value)
    hits = text.count(old) if old else len(text) + 1
    if count is not None and count >= 0:
        hits = min(hits, count)
    _bounded(len(text) + hits * max(0, len(new) - len(old)), "replace")
    return text.replace(old, new, -1 if count is None else count)


def _join(value: Iterable[Any], separator: str = "", attribute: str | None = None) -> str:
    items = list(value)
    if attribute is not None:
        raise SecurityError("join(attribute=...) is not available; use map(attribute=...)")
    strings = [str(v) for v in items]
    _bounded(sum(len(s) for s in strings) + len(separator) * len(strings), "join")
    return separator.join(strings)


def _printable(value: Any) -> Any:
    # What a template prints: text, numbers and containers of them. A function or object
    # would print its repr (type names, memory addresses): refused instead.
    if value is None or isinstance(value, str | int | float | Undefined):
        return value
    if isinstance(value, list | tuple) and all(_plain(v) for v in value):
        return value
    if isinstance(value, Mapping) and all(_plain(v) for v in value.values()):
        return value
    raise SecurityError(f"a {type(value).__name__} cannot be printed; print text or numbers")


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, str | int | float):
        return True
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    if isinstance(value, Mapping):
        return all(_plain(v) for v in value.values())
    return False


def _charged(function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)  # keeps Jinja's pass_context/pass_eval_context marker
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _charge(1 + sum(_size(a) for a in args) // 1_000)
        return function(*args, **kwargs)

    return wrapper


class _Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, with sizes and work bounded and only safe methods callable."""

    intercepted_binops = frozenset({"+", "*", "**", "%"})

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if not super().is_safe_attribute(obj, attr, value):
            return False
        if isinstance(obj, str | list | tuple | Mapping) and callable(value):
            return attr in _SAFE_METHODS
        return True

    def wrap_str_format(self, value: Any) -> None:
        # str.format is not on the allow-list; returning None hands it to is_safe_attribute.
        return None

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        # Positional-only, like Jinja's dunder names: keywords stay free for the callee.
        _charge()
        return super().call(context, obj, *args, **kwargs)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        match operator:
            case "+" if isinstance(left, str | list | tuple):
                _bounded(_size(left) + _size(right), "'+'")
            case "*":
                _check_multiply(left, right)
            case "**" if isinstance(left, int) and isinstance(right, int) and right > 0:
                if max(1, abs(left).bit_length()) * right > _MAX_INT_BITS and abs(left) > 1:
                    raise SecurityError("'**' result is too large")
            case "%" if isinstance(left, str):
                raise SecurityError("'%' string formatting is not available; use '~'")
        return super().call_binop(context, operator, left, right)


def _check_multiply(left: Any, right: Any) -> None:
    for sequence, times in ((left, right), (right, left)):
        if isinstance(sequence, str | list | tuple) and isinstance(times, int):
            _bounded(_size(sequence) * max(0, times), "'*'")
    if (
        isinstance(left, int)
        and isinstance(right, int)
        and (abs(left).bit_length() + abs(right).bit_length() > _MAX_INT_BITS)
    ):
        raise SecurityError("'*' result is too large")


@functools.cache
def _environment() -> _Sandbox:
    env = _Sandbox(
        undefined=StrictUndefined,
        autoescape=False,
        loader=None,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        auto_reload=False,
        finalize=_printable,
    )
    env.filters = {name: _charged(FILTERS[name]) for name in ALLOWED_FILTERS}
    env.filters["replace"] = _charged(_replace)
    env.filters["join"] = _charged(_join)
    env.globals = {
        "range": _safe_range,
        "namespace": env.globals["namespace"],
        _ITER: _counted_iter,
        _CONCAT: _concat,
    }
    return env


@dataclass(frozen=True, slots=True)
class CompiledPart:
    """A checked, compiled part and the variables it reads."""

    template: Any  # jinja2.Template (untyped attributes)
    names: frozenset[str]
    lines: Mapping[str, int]  # the first line each of ``names`` appears on


class _Instrument(NodeTransformer):
    """Routes loops and '~' through the budget (applied after the checks)."""

    def visit_For(self, node: nodes.For) -> nodes.Node:  # noqa: N802 — visitor protocol
        self.generic_visit(node)
        node.iter = nodes.Call(
            nodes.Name(_ITER, "load"), [node.iter], [], None, None, lineno=node.lineno
        )
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:  # noqa: N802
        self.generic_visit(node)
        return nodes.Call(
            nodes.Name(_CONCAT, "load"), list(node.nodes), [], None, None, lineno=node.lineno
        )


def analyse(text: str) -> tuple[CompiledPart | None, list[tuple[int, str]]]:
    """Parse, check and compile ``text``; problems come as (line, message)."""
    env = _environment()
    try:
        tree = env.parse(text)
    except TemplateSyntaxError as exc:
        return None, [(exc.lineno, f"syntax error: {exc.message}")]
    problems = ast_problems(tree)
    if problems:
        return None, problems
    names = frozenset(meta.find_undeclared_variables(tree)) - set(GLOBALS)
    lines: dict[str, int] = {}
    for node in tree.find_all(nodes.Name):
        if node.name in names:
            lines[node.name] = min(lines.get(node.name, node.lineno), node.lineno)
    tree = _Instrument().visit(tree)
    tree.set_environment(env)
    try:
        template = env.from_string(tree)
    except TemplateSyntaxError as exc:  # e.g. an unknown test, found while compiling
        return None, [(exc.lineno, f"syntax error: {exc.message}")]
    return CompiledPart(template, names, lines), []


@functools.lru_cache(maxsize=1024)
def checked(text: str) -> tuple[CompiledPart | None, tuple[tuple[int, str], ...]]:
    """``analyse`` cached by text (templates are shared by many layers and requests)."""
    part, problems = analyse(text)
    return part, tuple(problems)


def compiled(text: str) -> CompiledPart:
    """The compiled part for ``text`` (cached); a rejected text is a render error."""
    part, problems = checked(text)
    if part is None:
        line, message = problems[0]
        raise PromptRenderError(f"a prompt part fails the sandbox checks (line {line}): {message}")
    return part


def _run(part: CompiledPart, values: dict[str, Any]) -> str:
    token = _BUDGET.set(_Budget(MAX_STEPS))
    try:
        template = part.template
        chunks: list[str] = []
        size = 0
        for chunk in template.root_render_func(template.new_context(values)):
            size += len(chunk)
            if size > MAX_OUTPUT_CHARS:
                raise SecurityError(f"the output is longer than {MAX_OUTPUT_CHARS} characters")
            chunks.append(chunk)
        return "".join(chunks)
    finally:
        _BUDGET.reset(token)


def _template_line(part: CompiledPart, traceback: TracebackType | None) -> int | None:
    line = None
    while traceback is not None:
        if traceback.tb_frame.f_code.co_filename == "<template>":
            line = part.template.get_corresponding_lineno(traceback.tb_lineno)
        traceback = traceback.tb_next
    return line


def render_part(name: str, part: CompiledPart, values: dict[str, Any]) -> str:
    """Render at request time; any failure is a PromptRenderError naming no value."""
    try:
        return _run(part, values)
    except Exception as exc:
        line = _template_line(part, exc.__traceback__)
        where = f" at line {line}" if line else ""
        raise PromptRenderError(
            f"prompt part '{name}' could not be rendered{where} ({type(exc).__name__}); "
            "fix the prompt version or roll back",
            extra={"part": name, "line": line, "error": type(exc).__name__},
        ) from None


def trial_render(part: CompiledPart, values: dict[str, Any]) -> tuple[int | None, str] | None:
    """Render with sample values at save time: None, or (line, what went wrong)."""
    try:
        _run(part, values)
    except Exception as exc:
        message = str(exc)
        if len(message) > 200:
            message = message[:200] + "…"
        return _template_line(part, exc.__traceback__), f"{type(exc).__name__}: {message}"
    return None
