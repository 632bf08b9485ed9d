"""config.mirror.referrers and .referrerTypes through the chart: checked by values.schema.json
at install time, and rendered into a config swapper accepts."""

from __future__ import annotations

from typing import Any

import pytest
from chart.rendering import render, render_error

from swapper.config import load_config


def test_referrer_settings_render_into_a_config_swapper_reads_the_same_way() -> None:
    types = ["application/vnd.dev.cosign.*", "application/spdx+json"]
    rendered = render({"config": {"mirror": {"referrers": True, "referrerTypes": types}}})
    config = load_config(rendered.config)
    assert config.mirror.referrers is True
    assert config.mirror.referrer_types == tuple(types)
    off = load_config(render({"config": {"mirror": {"referrers": False}}}).config)
    assert off.mirror.referrers is False


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"config": {"mirror": {"referrers": "yes"}}}, "/config/mirror/referrers"),
        ({"config": {"mirror": {"referrerTypes": ["sbom"]}}}, "/config/mirror/referrerTypes"),
        ({"config": {"mirror": {"referrerTypes": "spdx json"}}}, "/config/mirror/referrerTypes"),
    ],
)
def test_a_mistyped_referrer_value_is_refused_naming_its_key(
    values: dict[str, Any], where: str
) -> None:
    assert f"at '{where}" in render_error(values)
