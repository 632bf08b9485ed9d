"""JMESPath filters: compiled once, evaluated per container.

Each expression sees ``{"obj": <pod>, "container": <container>}``. A filter that evaluates to
``true`` skips the container. A filter that errors at run time or returns anything but a
boolean counts as no match and is logged at debug level with the filter, the error (without the
value it was given) or the type of the result, and the names of the pod and container and the
image: never the pod itself, whose annotations (``last-applied-configuration``) and literal
``env`` values often hold secrets (``swapper explain -f`` shows a pod's decisions). Besides the
JMESPath built-ins (``starts_with``, ``ends_with``, ``contains``, ...),
``regex_match(pattern, string)``, ``lower(s)`` and ``upper(s)`` are available; the config
refuses a filter that calls any other function, or one with the wrong number of arguments (such
a call fails on every evaluation).
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jmespath
import jmespath.exceptions
import jmespath.functions
import jmespath.visitor

from swapper.logs import get_logger

log = get_logger("swapper.filters")


@functools.lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


class FilterFunctions(jmespath.functions.Functions):
    """The functions a filter can call: the JMESPath built-ins and swapper's own."""

    @jmespath.functions.signature({"types": ["string"]}, {"types": ["string"]})
    def _func_regex_match(self, pattern: str, value: str) -> bool:
        return _regex(pattern).search(value) is not None

    @jmespath.functions.signature({"types": ["string"]})
    def _func_lower(self, value: str) -> str:
        return value.lower()

    @jmespath.functions.signature({"types": ["string"]})
    def _func_upper(self, value: str) -> str:
        return value.upper()


_FILTER_FUNCTIONS: dict[str, Any] = FilterFunctions().FUNCTION_TABLE


def _function_calls(node: Mapping[str, Any]) -> Iterator[tuple[str, int]]:
    """``(name, number of arguments)`` of every function call in a parsed expression."""
    if node.get("type") == "function_expression":
        yield str(node["value"]), len(node.get("children", ()))
    for child in node.get("children", ()):
        yield from _function_calls(child)


def _check_function_call(name: str, given: int) -> None:
    """Refuse a call the JMESPath runtime would fail on every time: an unknown function, or a
    wrong number of arguments."""
    function = _FILTER_FUNCTIONS.get(name)
    if function is None:
        close = difflib.get_close_matches(name, _FILTER_FUNCTIONS, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"calls unknown function {name!r}{hint}")
    signature = function["signature"]
    variadic = bool(signature) and bool(signature[-1].get("variadic"))
    wanted = len(signature)
    if (given < wanted) if variadic else (given != wanted):
        count = f"at least {wanted}" if variadic else str(wanted)
        plural = "" if given == 1 else "s"
        raise ValueError(f"calls {name}() with {given} argument{plural}; it takes {count}")


def check_jmespath(value: str) -> str:
    """``value`` when it compiles and calls only known functions; ValueError otherwise."""
    try:
        parsed = jmespath.compile(value).parsed
    except jmespath.exceptions.JMESPathError as exc:
        raise ValueError(f"does not compile: {' '.join(str(exc).split())}") from exc
    for name, given in _function_calls(parsed):
        _check_function_call(name, given)
    return value


# One function table for every JMESPath swapper evaluates; the config refuses, through
# check_jmespath, an expression calling a function not in it.
_OPTIONS = jmespath.Options(custom_functions=FilterFunctions())

Evaluator = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class _Internals:
    """The tree walker's own comparison, truthiness and function-call helpers, reused so that
    compiled filters evaluate exactly as the library does. They are private to jmespath (not
    in its type stubs) and found by name each time filters are compiled: where this version of
    the library has no helper by that name (None here), the node types that need it are handed
    to the walker instead of compiled."""

    comparators: Mapping[str, Callable[[Any, Any], Any]]  # empty when missing
    is_comparable: Callable[[Any], Any] | None
    is_actual_number: Callable[[Any], Any] | None
    is_false: Callable[[Any], Any] | None
    call_function: Callable[[str, list[Any]], Any] | None


def _internals(interpreter: Any) -> _Internals:
    visitor: Any = jmespath.visitor
    comparators = getattr(interpreter, "COMPARATOR_FUNC", None)
    return _Internals(
        comparators=comparators if isinstance(comparators, Mapping) else {},
        is_comparable=getattr(visitor, "_is_comparable", None),
        is_actual_number=getattr(visitor, "_is_actual_number", None),
        is_false=getattr(interpreter, "_is_false", None),
        call_function=getattr(getattr(interpreter, "_functions", None), "call_function", None),
    )


def compile_node(node: Mapping[str, Any], interpreter: Any) -> Evaluator:
    """A closure that evaluates a parsed JMESPath node like ``interpreter.visit(node, value)``.

    Filters run on every admitted container, and the library's tree walker dispatches each node
    by name on every evaluation. The node types filters are made of (fields, ``==``/``!=`` and
    ordering comparisons, literals, ``&&``/``||``/``!``, function calls, pipes, indexes) become
    nested closures with the walker's exact semantics (its own comparison helpers, truthiness
    and function table, see :class:`_Internals`); every other node type, and one whose helper
    this version of jmespath lacks, is handed to the walker itself. The equivalence is checked
    against ``jmespath.search`` in the tests, with and without those helpers.
    """
    return _compile(node, interpreter, _internals(interpreter))


def _compile(node: Mapping[str, Any], interpreter: Any, lib: _Internals) -> Evaluator:
    kind = node["type"]

    def children() -> list[Evaluator]:
        return [_compile(c, interpreter, lib) for c in node.get("children", ())]

    if kind == "field":
        key = node["value"]

        def field(value: Any) -> Any:
            return value.get(key) if isinstance(value, dict) else None

        return field
    if kind in ("subexpression", "pipe", "index_expression"):
        return _chain(children())
    if kind == "literal":
        literal = node["value"]
        return lambda _: literal
    if kind in ("current", "identity"):
        return lambda value: value
    if kind == "comparator" and node["value"] in lib.comparators:
        op = node["value"]
        compare = lib.comparators[op]
        if op in ("eq", "ne"):
            left, right = children()
            return lambda value: compare(left(value), right(value))
        if (is_comparable := lib.is_comparable) is not None:
            left, right = children()

            def ordering(value: Any) -> Any:
                a, b = left(value), right(value)
                if not (is_comparable(a) and is_comparable(b)):
                    return None
                return compare(a, b)

            return ordering
    if kind in ("and_expression", "or_expression") and (is_false := lib.is_false) is not None:
        first, second = children()
        if kind == "and_expression":

            def and_(value: Any) -> Any:
                matched = first(value)
                return matched if is_false(matched) else second(value)

            return and_

        def or_(value: Any) -> Any:
            matched = first(value)
            return second(value) if is_false(matched) else matched

        return or_
    if kind == "not_expression" and (is_number := lib.is_actual_number) is not None:
        (inner,) = children()

        def not_(value: Any) -> bool:
            result = inner(value)
            if is_number(result) and result == 0:
                return False
            return not result

        return not_
    if kind == "function_expression" and (call := lib.call_function) is not None:
        name = node["value"]
        args = children()
        return lambda value: call(name, [arg(value) for arg in args])
    if kind == "index":
        position = node["value"]

        def index(value: Any) -> Any:
            if not isinstance(value, list):
                return None
            try:
                return value[position]
            except IndexError:
                return None

        return index
    # Projections, slices, multi-selects, expression references, and a node whose helper is
    # missing: the walker does them.
    return functools.partial(interpreter.visit, node)


def _chain(steps: Sequence[Evaluator]) -> Evaluator:
    if len(steps) == 2:
        first, second = steps
        return lambda value: second(first(value))

    def chain(value: Any) -> Any:
        for step in steps:
            value = step(value)
        return value

    return chain


def scrub(value: Any) -> Any:
    """A copy fit for a log line: literal ``env[].value`` strings (often secrets) are hidden."""
    if isinstance(value, Mapping):
        out = {k: scrub(v) for k, v in value.items()}
        env = value.get("env")
        if isinstance(env, list):
            out["env"] = [
                {**e, "value": "[redacted]"} if isinstance(e, Mapping) and "value" in e else e
                for e in env
            ]
        return out
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


# Node types through which an expression can see the whole context, container included.
_WHOLE_CONTEXT = frozenset({"current", "value_projection"})


def reads_container(node: Mapping[str, Any]) -> bool:
    """Whether a parsed expression may depend on ``container`` (conservative: when unsure, yes)."""
    if node.get("type") in _WHOLE_CONTEXT:
        return True
    if node.get("type") == "field" and node.get("value") == "container":
        return True
    return any(reads_container(child) for child in node.get("children", ()))


class Filters:
    """The configured filters, compiled once.

    A filter that cannot see ``container`` (``obj.metadata.namespace == 'kube-system'``, the
    common case) gives the same answer for every container of a pod; it is evaluated once per
    pod when the caller passes the same ``memo`` dict for all containers of that pod.
    """

    def __init__(self, expressions: Sequence[str]) -> None:
        self.expressions = tuple(expressions)
        parsed = [jmespath.compile(e).parsed for e in self.expressions]
        interpreter = jmespath.visitor.TreeInterpreter(_OPTIONS)
        self._compiled = tuple(compile_node(p, interpreter) for p in parsed)
        self._pod_level = tuple(not reads_container(p) for p in parsed)

    def __len__(self) -> int:
        return len(self._compiled)

    def first_match(
        self,
        pod: Mapping[str, Any],
        container: Mapping[str, Any],
        memo: dict[int, Any] | None = None,
    ) -> int | None:
        """Index of the first filter that skips this container, or None."""
        if not self._compiled:
            return None
        context = None
        for index, pod_level in enumerate(self._pod_level):
            if memo is not None and pod_level and index in memo:
                result = memo[index]
            else:
                if context is None:
                    context = {"obj": pod, "container": container}
                result = self._evaluate(index, context)
                if memo is not None and pod_level:
                    memo[index] = result
            if result is True:
                return index
        return None

    def _evaluate(self, index: int, context: dict[str, Any]) -> Any:
        """The filter's value; None when it errors. A non-boolean is logged and never matches."""
        try:
            result = self._compiled[index](context)
        except (jmespath.exceptions.JMESPathError, ValueError, TypeError, re.error) as exc:
            log.debug(
                "filter_error",
                filter=index,
                jmespath=self.expressions[index],
                error=_error_text(exc),
                **_whereabouts(context),
            )
            return None
        if not isinstance(result, bool) and result is not None:
            log.debug(
                "filter_not_boolean",
                filter=index,
                jmespath=self.expressions[index],
                result_type=_JSON_TYPES.get(type(result), type(result).__name__),
                **_whereabouts(context),
            )
        return result


_JSON_TYPES = {str: "string", int: "number", float: "number", dict: "object", list: "array"}


def _error_text(exc: Exception) -> str:
    """The error without the value it is about (a type error quotes the value in full)."""
    if isinstance(exc, jmespath.exceptions.JMESPathTypeError):
        return (
            f"In function {exc.function_name}(), invalid type: expected one of "
            f"{exc.expected_types}, received {exc.actual_type!r}"
        )
    if isinstance(exc, jmespath.exceptions.JMESPathError | re.error):
        return str(exc)
    return type(exc).__name__  # a Python error's message may quote a value


def _whereabouts(context: Mapping[str, Any]) -> dict[str, Any]:
    """The names of the pod and container a filter ran on, and the image: nothing else."""

    def text(value: Any) -> str | None:
        return value if isinstance(value, str) else None

    pod, container = context.get("obj"), context.get("container")
    metadata = pod.get("metadata") if isinstance(pod, Mapping) else None
    if not isinstance(metadata, Mapping):
        metadata = {}
    if not isinstance(container, Mapping):
        container = {}
    return {
        "namespace": text(metadata.get("namespace")),
        "pod": text(metadata.get("name")) or text(metadata.get("generateName")),
        "container": text(container.get("name")),
        "image": text(container.get("image")),
    }
