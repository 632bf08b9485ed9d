"""The cluster half: what the elected leader runs to look after what already runs (the
elector, the pod watch, the backfill), and ``swapper audit``, the one-off report over the same
pods.

It stands on the shared domain (pods, mutation, mirror, targets, kube) and never imports the
admission half (:mod:`swapper.admission`); :mod:`swapper.serve` puts the two together.
"""
