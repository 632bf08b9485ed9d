"""Compiled filters evaluate exactly as the JMESPath library does, on generated expressions."""

from __future__ import annotations

from typing import Any

import jmespath
import jmespath.exceptions
import jmespath.visitor
from hypothesis import given, settings
from hypothesis import strategies as st

from swapper.filters import _OPTIONS, compile_node

KEYS = ["a", "b", "name", "items"]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 2),
    st.floats(-2, 2, allow_nan=False),
    st.sampled_from(["", "x", "a", "kube-system"]),
)
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)
    ),
    max_leaves=12,
)
literals = st.sampled_from(
    ["'x'", "'a'", "`0`", "`1`", "`true`", "`false`", "`null`", "`[]`", "`{}`", "''", "`2.5`"]
)


def expressions() -> st.SearchStrategy[str]:
    paths = st.lists(st.sampled_from(KEYS), min_size=1, max_size=3).map(".".join)
    atoms = st.one_of(paths, literals, st.just("@"), paths.map(lambda p: f"{p}[0]"))
    functions = st.sampled_from(["length", "lower", "starts_with", "contains", "type"])

    def combine(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        binary = st.tuples(
            inner, st.sampled_from(["==", "!=", "<", "<=", ">", ">=", "&&", "||"]), inner
        ).map(lambda t: f"({t[0]} {t[1]} {t[2]})")
        unary = inner.map(lambda e: f"!({e})")
        call = st.tuples(functions, inner, inner).map(
            lambda t: (
                f"{t[0]}({t[1]})"
                if t[0] in ("length", "lower", "type")
                else f"{t[0]}({t[1]}, {t[2]})"
            )
        )
        pipe = st.tuples(inner, paths).map(lambda t: f"{t[0]} | {t[1]}")
        projection = paths.map(lambda p: f"{p}[*].name")
        return st.one_of(binary, unary, call, pipe, projection)

    return st.recursive(atoms, combine, max_leaves=4)


def outcome(evaluate: Any, document: Any) -> tuple[str, Any]:
    try:
        return "value", evaluate(document)
    except (jmespath.exceptions.JMESPathError, TypeError, ValueError) as exc:
        return "error", type(exc).__name__


@settings(max_examples=1500, deadline=None)
@given(expressions(), documents)
def test_compiled_expressions_agree_with_the_jmespath_library(expression: str, doc: Any) -> None:
    parsed = jmespath.compile(expression)
    compiled = compile_node(parsed.parsed, jmespath.visitor.TreeInterpreter(_OPTIONS))
    expected = outcome(lambda d: parsed.search(d, options=_OPTIONS), doc)
    got = outcome(compiled, doc)
    assert got == expected
    if got[0] == "value":  # True is not 1, and 0 is not False, in JMESPath
        assert type(got[1]) is type(expected[1])


def test_the_common_namespace_filter_is_compiled_into_closures_not_walked() -> None:
    node = jmespath.compile("obj.metadata.namespace == 'kube-system'").parsed

    class Refusing(jmespath.visitor.TreeInterpreter):
        def visit(self, node: Any, *args: Any, **kwargs: Any) -> Any:
            raise AssertionError("the tree walker was used")

    compiled = compile_node(node, Refusing(_OPTIONS))
    assert compiled({"obj": {"metadata": {"namespace": "kube-system"}}}) is True
    assert compiled({"obj": {"metadata": {"namespace": "prod"}}}) is False
