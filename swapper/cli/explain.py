"""``swapper explain``: what admission would decide for a pod or for images; contacts nothing."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from swapper.cli import _load_config

if TYPE_CHECKING:
    from swapper.config import Config


def _read_manifests(path: str) -> list[tuple[str, dict[str, Any]]]:
    import yaml

    from swapper.errors import ConfigError

    source = "standard input" if path == "-" else path
    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        reason = " ".join(str(exc).split())
        raise ConfigError([("(file)", f"not valid YAML: {reason}")], source) from None
    from swapper.pods import pods_of

    pods = [pod for document in documents for pod in pods_of(document, source)]
    if not pods:
        raise ConfigError([("(file)", "no manifest in it")], source)
    return pods


def run(args: argparse.Namespace) -> int:
    from swapper.errors import ConfigError

    config = _load_config(args.config)
    if args.pod:
        pods = _read_manifests(args.pod)
    elif args.images:
        containers = [{"name": f"c{i}", "image": image} for i, image in enumerate(args.images)]
        pods = [("", {"metadata": {"name": "explain"}, "spec": {"containers": containers}})]
    else:
        raise ConfigError([("IMAGE", "give IMAGE arguments or --pod FILE")], "command line")

    for title, pod in pods:
        if len(pods) > 1:
            print(f"# {title}")
        for line in asyncio.run(explain(config, pod, args.namespace)):
            print(line)
    for note in explain_notes(config):
        print(f"note: {note}")
    return 0


def explain_notes(config: Config) -> list[str]:
    """What ``explain`` assumed instead of asking (it contacts nothing)."""
    notes = []
    if config.image_swap_policy == "exists":
        notes.append(
            "imageSwapPolicy is exists: every image was taken to be in the mirror; swapper "
            "serve swaps only those that are there, or that a copy puts there in time"
        )
    if config.source.check_access:
        notes.append(
            "source.checkAccess: the source registries were not asked; swapper serve swaps a "
            "private image only for pods whose own pull secrets can read it"
        )
    if config.mirror.verify:
        notes.append(
            "mirror.verify: signatures were not checked; swapper serve copies and swaps an image "
            "a rule applies to only when a signature verifies with one of the rule's keys "
            "(otherwise: unverified-signature)"
        )
    return notes


async def explain(config: Config, pod: dict[str, Any], namespace: str) -> list[str]:
    """One line per container: what swapper would do with this pod. Contacts nothing: with
    ``imageSwapPolicy: exists`` every image counts as present in the mirror."""
    from swapper.admission.answer import describe
    from swapper.admission.review import Mode
    from swapper.mirror.memory import MemoryCopyQueue
    from swapper.mirror.trust import AssumedSigned
    from swapper.mutation import Mutator, Policy, in_container_order, requester_of
    from swapper.pods import namespace_of
    from swapper.targets.memory import MemoryTarget

    namespace = namespace_of(pod, namespace)
    policy = Policy.from_config(config)
    target = MemoryTarget(policy.endpoint)
    mutator = Mutator(policy, target, MemoryCopyQueue(target), signatures=AssumedSigned())
    settled, candidates = mutator.plan(pod, namespace)
    needs_signature = {
        c.container.name: policy.verify.describe(rules)
        for c in candidates
        if (rules := policy.verify.matching(c.source))
    }
    for c in candidates:
        target.add_image(c.target)
    mode = Mode.AUDIT  # what would be done, each container reported, as in dryRun
    resolved = await mutator.resolve(candidates, requester_of(pod, namespace), mode.side_effects)
    decisions = in_container_order(settled, resolved)
    lines = []
    for decision in decisions:
        line = " ".join(describe([decision], mode)[0])
        if decision.filter_index is not None:
            expression = config.source.filters[decision.filter_index].jmespath
            line += f" ({expression})"
        if decision.swapped and decision.container.name in needs_signature:
            line += (
                f" (only if signed: {needs_signature[decision.container.name]}, not checked here)"
            )
        lines.append(line)
    return lines
