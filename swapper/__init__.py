"""swapper: a Kubernetes mutating admission webhook that mirrors pod images to your own registry.

The layers, top to bottom, are kept by import-linter (pyproject.toml): cli, server, wiring,
app, answer and backends, patches, mutation, admission and filters, mirror, kube, targets, oci
and keyring, images and credentials, config, errors, aio. A module imports only those below it.
"""

__version__ = "0.1.0"
