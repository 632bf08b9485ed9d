"""``swapper audit``: what admission would decide for the pods already in a cluster.

- :mod:`.collect` reads pods page by page, plans each as its page arrives and keeps only the
  aggregate per (namespace, image, decision); then it settles the images that need the
  mirror's or the source's answer, each distinct image once.
- :mod:`.render` writes the report as a table, JSON, or one self-contained HTML page.

It writes nothing, to the cluster or to a registry: no copy queue, ``side_effects=False``.
"""

from swapper.controller.audit.collect import (
    Audit,
    Registries,
    Report,
    Row,
    read_pods,
    registries_for,
)
from swapper.controller.audit.render import render_html, render_json, render_table

__all__ = [
    "Audit",
    "Registries",
    "Report",
    "Row",
    "read_pods",
    "registries_for",
    "render_html",
    "render_json",
    "render_table",
]
