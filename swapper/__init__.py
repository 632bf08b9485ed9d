"""swapper: a Kubernetes mutating admission webhook that mirrors pod images to your own registry.

The layers, top to bottom, are kept by import-linter (pyproject.toml): cli, serve, the two
halves (admission, controller), wiring and reload, backends, supervisor, mutation, mirror,
access, kube, targets, oci, images and the pod model, config, cosign, settings, errors, and
aio, logs and stamps. A module imports only those below it.
"""

__version__ = "0.1.0"
