"""The type-to-module table: every registry kind the config accepts has a module that builds it,
and every module in the table offers what the factory calls."""

from __future__ import annotations

import importlib
from typing import get_args

import pytest

from swapper.config import Target, load_config
from swapper.config.registries import RegistryType
from swapper.errors import ConfigError
from swapper.targets.factory import TARGETS, build_target


def test_every_registry_kind_of_the_config_has_a_module_in_the_table() -> None:
    assert set(TARGETS) == set(get_args(RegistryType))


def test_every_kind_has_its_settings_field_on_the_target_section() -> None:
    assert set(get_args(RegistryType)) <= set(Target.model_fields)


@pytest.mark.parametrize("kind", sorted(TARGETS))
def test_every_module_in_the_table_offers_from_config_and_client_hosts(kind: str) -> None:
    module = importlib.import_module(TARGETS[kind])
    assert callable(getattr(module, "from_config", None))
    assert callable(getattr(module, "client_hosts", None))


def test_a_kind_without_a_module_is_refused_naming_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    config = load_config(
        {"target": {"type": "generic", "generic": {"registry": "registry.local:5000/mirror"}}}
    )
    monkeypatch.delitem(TARGETS, "generic")
    with pytest.raises(ConfigError, match=r"target\.type"):
        build_target(config)
