"""Compiled filters without the jmespath internals they reuse: the nodes that need a missing
helper are handed to the library's tree walker, and filters still evaluate as the library does.

A jmespath release that renamed a private helper is simulated by loading the library's own
``jmespath.visitor`` with that name changed and putting it where ``jmespath`` (and its parser)
find their walker: the walker keeps working, but the helper is not where swapper looks.
"""

from __future__ import annotations

import functools
import re
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jmespath
import jmespath.exceptions
import jmespath.parser
import jmespath.visitor
import pytest

from swapper.filters import _OPTIONS, Filters, compile_node

HELPERS = ["_is_comparable", "_is_actual_number", "_is_false", "_functions", "COMPARATOR_FUNC"]

# Expressions of one node kind each (the last: of kinds that need none), and the helpers the
# kind's compiled closure reuses.
KINDS = {
    "a < b": {"COMPARATOR_FUNC", "_is_comparable"},
    "a == b": {"COMPARATOR_FUNC"},
    "!a": {"_is_actual_number"},
    "a && b": {"_is_false"},
    "a || b": {"_is_false"},
    "length(a)": {"_functions"},
    "a.b[0] | c": set(),
}
EXPRESSIONS = [
    *KINDS,
    "a >= b",
    "a != b",
    "lower(b)",
    "!(a == b)",
    "a[0] > `0` || b",
    "a | length(@) > `1`",
    "type(a) == 'number' && !b",
    "starts_with(b, 'a') || a <= `1`",
]
DOCUMENTS: list[Any] = [
    {},
    {"a": 1, "b": 2},
    {"a": 2.5, "b": 1},
    {"a": "x", "b": "x"},
    {"a": 0, "b": "abc"},
    {"a": [], "b": {}},
    {"a": [1, 2], "b": "a"},
    {"a": None, "b": None},
    {"a": True, "b": False},
    "not an object",
]


def _library_without(*names: str) -> types.ModuleType:
    """The library's tree walker as a release that renamed ``names`` would have it."""
    path = Path(jmespath.visitor.__file__)
    source = path.read_text()
    for name in names:
        source, count = re.subn(rf"\b{name}\b", f"{name}_renamed", source)
        assert count, name
    module = types.ModuleType("jmespath.visitor")
    module.__file__ = str(path)
    exec(compile(source, str(path), "exec"), module.__dict__)  # noqa: S102 (the library's own code)
    return module


@pytest.fixture
def without(monkeypatch: pytest.MonkeyPatch) -> Callable[..., types.ModuleType]:
    """Installs the library without the given helpers, for the test's duration."""

    def install(*names: str) -> types.ModuleType:
        module = _library_without(*names)
        monkeypatch.setattr(jmespath, "visitor", module)
        monkeypatch.setattr(jmespath.parser, "visitor", module)
        monkeypatch.setitem(sys.modules, "jmespath.visitor", module)
        return module

    return install


def _outcome(evaluate: Any, document: Any) -> tuple[str, Any]:
    try:
        result = evaluate(document)
    except (jmespath.exceptions.JMESPathError, TypeError, ValueError) as exc:
        return "error", type(exc).__name__
    return "value", (type(result), result)


def _walked(expression: str, interpreter_class: Any) -> bool:
    """Whether the compiled expression hands any of its nodes to the tree walker."""

    class Refusing(interpreter_class):  # type: ignore[misc]
        def visit(self, node: Any, *args: Any, **kwargs: Any) -> Any:
            raise AssertionError("the tree walker was used")

    compiled = compile_node(jmespath.compile(expression).parsed, Refusing(_OPTIONS))
    try:
        compiled({"a": "xy", "b": "y"})
    except AssertionError:
        return True
    return False


@pytest.mark.parametrize("missing", HELPERS)
def test_without_a_jmespath_helper_compiled_expressions_agree_with_the_library(
    without: Any, missing: str
) -> None:
    library = without(missing)
    for expression in EXPRESSIONS:
        parsed = jmespath.compile(expression).parsed
        compiled = compile_node(parsed, library.TreeInterpreter(_OPTIONS))
        search = functools.partial(jmespath.search, expression, options=_OPTIONS)
        for document in DOCUMENTS:
            expected = _outcome(search, document)
            assert _outcome(compiled, document) == expected, (expression, document)


@pytest.mark.parametrize("missing", HELPERS)
def test_without_a_jmespath_helper_only_the_node_kinds_that_need_it_are_walked(
    without: Any, missing: str
) -> None:
    library = without(missing)
    walked = {e for e in KINDS if _walked(e, library.TreeInterpreter)}
    assert walked == {e for e, needs in KINDS.items() if missing in needs}


def test_a_filter_set_compiled_without_any_helper_skips_the_containers_the_library_would(
    without: Any,
) -> None:
    without(*HELPERS)
    expressions = [
        "container.a < container.b",
        "!container.a",
        "container.a && container.b",
        "length(container.a) > `1`",
        "container.a == container.b",
    ]
    filters = Filters(expressions)
    pod = {"metadata": {"name": "web", "namespace": "shop"}}
    for container in DOCUMENTS:
        context = {"obj": pod, "container": container}
        results = [
            _outcome(functools.partial(jmespath.search, e, options=_OPTIONS), context)
            for e in expressions
        ]
        expected = next((i for i, r in enumerate(results) if r == ("value", (bool, True))), None)
        assert filters.first_match(pod, container) == expected, container
