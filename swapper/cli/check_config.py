"""``swapper check-config``: the config as swapper understands it, or what is wrong with it."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from swapper.cli import _load_config

if TYPE_CHECKING:
    pass


def run(args: argparse.Namespace) -> int:
    import yaml

    config = _load_config(args.file)
    for key, message in config.warnings:  # settings that do nothing: said, but no refusal
        print(f"swapper: warning: {key}: {message}", file=sys.stderr)

    class Dumper(yaml.SafeDumper):
        """Multi-line strings (access and lifecycle policies) as ``|`` blocks."""

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    print(yaml.dump(config.effective(), Dumper=Dumper, sort_keys=False), end="")
    return 0
