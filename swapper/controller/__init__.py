"""The cluster half, run by the elected leader only: it looks after what already runs.

It stands on the shared domain (pods, mutation, mirror, targets, kube) and never imports the
admission half (:mod:`swapper.admission`); :mod:`swapper.serve` puts the two together.
"""
