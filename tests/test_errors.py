"""The one error tree: ``swapper/errors.py`` draws it, and every exception swapper defines is in
it."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import swapper
from swapper import errors
from swapper.errors import CopyError, CopyReason
from swapper.oci import REASONS

README = Path(__file__).parent.parent / "README.md"


def drawn_tree() -> dict[str, str]:
    """Each class in the module docstring's tree, mapped to the class it hangs under."""
    doc = errors.__doc__ or ""
    lines = doc.split("::", 1)[1].strip("\n").splitlines()
    parents: dict[str, str] = {}
    path = [lines[0].split()[0]]  # SwapperError
    for line in lines[1:]:
        if not line.strip():
            break
        mark = max(line.find("├── "), line.find("└── "))
        depth = (mark - 4) // 4 + 1  # the root is at column 4, each level 4 more
        name = line[mark + 4 :].split()[0]
        del path[depth:]
        parents[name] = path[-1]
        path.append(name)
    return parents


def defined_errors() -> dict[str, type[BaseException]]:
    """Every exception class that a module of swapper defines, by name."""
    found: dict[str, type[BaseException]] = {}
    for module in pkgutil.walk_packages(swapper.__path__, "swapper."):
        if module.name == "swapper.__main__":
            continue
        for _, value in inspect.getmembers(importlib.import_module(module.name), inspect.isclass):
            if issubclass(value, BaseException) and value.__module__.startswith("swapper."):
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return found


def test_the_docstring_draws_the_class_hierarchy_of_errors_py() -> None:
    defined = {
        name: value.__bases__[0].__name__
        for name, value in vars(errors).items()
        if isinstance(value, type)
        and issubclass(value, errors.SwapperError)
        and value is not errors.SwapperError
    }
    assert drawn_tree() == defined


def test_every_exception_swapper_defines_is_defined_in_errors_py() -> None:
    outside = sorted(name for name in defined_errors() if not name.startswith("swapper.errors."))
    assert outside == []


def test_every_exception_in_errors_py_derives_from_swapper_error() -> None:
    roots = sorted(
        name
        for name, value in defined_errors().items()
        if not issubclass(value, errors.SwapperError)
    )
    assert roots == []


def readme_failed_copy_reasons() -> list[str]:
    """The reasons README.md's metrics table gives ``swapper_copies_failed_total``."""
    (row,) = [
        line
        for line in README.read_text(encoding="utf-8").splitlines()
        if line.startswith("| `swapper_copies_failed_total` |")
    ]
    labels = row.split("|")[2]
    listed = re.sub(r"\([^)]*\)", "", labels.split(":", 1)[1])  # the explanations dropped
    return [item.strip() for item in re.split(r",| and ", listed) if item.strip()]


def test_the_readme_lists_exactly_the_copy_reasons_for_failed_copies() -> None:
    assert readme_failed_copy_reasons() == [reason.value for reason in CopyReason]


def test_a_copy_error_given_its_reason_as_text_holds_the_copy_reason() -> None:
    assert CopyError("refused", "denied").reason is CopyReason.DENIED  # type: ignore[arg-type]


def test_a_copy_error_cannot_be_made_with_a_reason_outside_copy_reason() -> None:
    with pytest.raises(ValueError, match="network"):
        CopyError("boom", "network")  # type: ignore[arg-type]


def test_every_reason_of_the_oci_package_is_a_copy_reason() -> None:
    assert all(isinstance(reason, CopyReason) for reason in REASONS)
    assert len(set(REASONS)) == len(REASONS)
