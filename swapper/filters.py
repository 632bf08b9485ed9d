"""JMESPath filters: compiled once, evaluated per container.

Each expression sees ``{"obj": <pod>, "container": <container>}``. A filter that evaluates to
``true`` skips the container. A filter that errors at run time or returns anything but a
boolean counts as no match and is logged at debug level with the filter and its context, so a
user can replay it on jmespath.org. Besides the JMESPath built-ins (``starts_with``,
``ends_with``, ``contains``, ...), ``regex_match(pattern, string)``, ``lower(s)`` and
``upper(s)`` are available.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any

import jmespath
import jmespath.exceptions
import jmespath.functions

from swapper.logs import get_logger

log = get_logger("swapper.filters")


@functools.lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


class _Functions(jmespath.functions.Functions):
    @jmespath.functions.signature({"types": ["string"]}, {"types": ["string"]})
    def _func_regex_match(self, pattern: str, value: str) -> bool:
        return _regex(pattern).search(value) is not None

    @jmespath.functions.signature({"types": ["string"]})
    def _func_lower(self, value: str) -> str:
        return value.lower()

    @jmespath.functions.signature({"types": ["string"]})
    def _func_upper(self, value: str) -> str:
        return value.upper()


_OPTIONS = jmespath.Options(custom_functions=_Functions())


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
        self._compiled = tuple(jmespath.compile(e) for e in self.expressions)
        self._pod_level = tuple(not reads_container(c.parsed) for c in self._compiled)

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
        context = {"obj": pod, "container": container}
        for index in range(len(self._compiled)):
            if memo is not None and self._pod_level[index]:
                if index not in memo:
                    memo[index] = self._evaluate(index, context)
                result = memo[index]
            else:
                result = self._evaluate(index, context)
            if result is True:
                return index
        return None

    def _evaluate(self, index: int, context: dict[str, Any]) -> Any:
        """The filter's value; None when it errors. A non-boolean is logged and never matches."""
        try:
            result = self._compiled[index].search(context, options=_OPTIONS)
        except (jmespath.exceptions.JMESPathError, ValueError, TypeError, re.error) as exc:
            log.debug(
                "filter_error",
                filter=index,
                jmespath=self.expressions[index],
                error=str(exc),
                context=scrub(context),
            )
            return None
        if not isinstance(result, bool) and result is not None:
            log.debug(
                "filter_not_boolean",
                filter=index,
                jmespath=self.expressions[index],
                result=repr(result),
                context=scrub(context),
            )
        return result
