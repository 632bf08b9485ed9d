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


class Filters:
    """The configured filters, compiled once."""

    def __init__(self, expressions: Sequence[str]) -> None:
        self.expressions = tuple(expressions)
        self._compiled = tuple(jmespath.compile(e) for e in self.expressions)

    def __len__(self) -> int:
        return len(self._compiled)

    def first_match(self, pod: Mapping[str, Any], container: Mapping[str, Any]) -> int | None:
        """Index of the first filter that skips this container, or None."""
        if not self._compiled:
            return None
        context = {"obj": pod, "container": container}
        for index, compiled in enumerate(self._compiled):
            try:
                result = compiled.search(context, options=_OPTIONS)
            except (jmespath.exceptions.JMESPathError, ValueError, TypeError, re.error) as exc:
                log.debug(
                    "filter_error",
                    filter=index,
                    jmespath=self.expressions[index],
                    error=str(exc),
                    context=scrub(context),
                )
                continue
            if result is True:
                return index
            if result is not False and result is not None:
                log.debug(
                    "filter_not_boolean",
                    filter=index,
                    jmespath=self.expressions[index],
                    result=repr(result),
                    context=scrub(context),
                )
        return None
