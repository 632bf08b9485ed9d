"""Which module builds which ``target.type``: the one table a new target joins.

A target module offers two functions:

- ``from_config(config, hosts)``: the :class:`~swapper.targets.base.TargetRegistry` for the
  config (``hosts``: the per-host client settings :func:`registry_hosts` gives);
- ``client_hosts(config, hosts)``: the settings its own registry host needs on top of
  ``mirror.hosts`` (a generic target's TLS options, ECR's chunked uploads), as ``{host:
  HostConfig}``.

The modules are imported when asked for, so what builds one target never loads another's SDK.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Protocol, cast

from swapper.errors import ConfigError
from swapper.oci import HostConfig

if TYPE_CHECKING:
    from swapper.config import Config, RegistryHost
    from swapper.targets.base import TargetRegistry

TARGETS: dict[str, str] = {
    "aws": "swapper.targets.ecr",
    "gcp": "swapper.targets.gar",
    "generic": "swapper.targets.generic",
}
"""``target.type`` -> the module that builds it."""


class TargetModule(Protocol):
    def from_config(self, config: Config, hosts: dict[str, HostConfig]) -> TargetRegistry: ...

    def client_hosts(
        self, config: Config, hosts: dict[str, HostConfig]
    ) -> dict[str, HostConfig]: ...


def _module(config: Config) -> TargetModule:
    name = TARGETS.get(config.target.type)
    if name is None:
        raise ConfigError([("target.type", f"{config.target.type!r} has no registry backend")])
    return cast(TargetModule, importlib.import_module(name))


def host_config(settings: RegistryHost) -> HostConfig:
    """The client settings of one ``mirror.hosts`` entry."""
    return HostConfig(
        plain_http=settings.insecure,
        verify_tls=not settings.skip_verify,
        ca_file=settings.ca_file or None,
    )


def registry_hosts(config: Config) -> dict[str, HostConfig]:
    """Per-host client settings: ``mirror.hosts``, with what the target's own host needs (a
    generic target's ``insecure``/``caFile``, merged as its existence checks use them; ECR's
    uploads in parts of at least 5 MiB)."""
    hosts = {host.lower(): host_config(h) for host, h in config.mirror.hosts.items()}
    hosts.update(_module(config).client_hosts(config, hosts))
    return hosts


def build_target(config: Config) -> TargetRegistry:
    """The configured target registry."""
    return _module(config).from_config(config, registry_hosts(config))
