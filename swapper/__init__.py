"""swapper: a Kubernetes mutating admission webhook that mirrors pod images to your own registry."""

__version__ = "0.1.0"
