"""What the admission app talks to and runs beside: one :class:`Backends`.

:func:`swapper.wiring.build_backends` builds it from the config for ``swapper serve``; a test
or a benchmark builds its own (a memory target and copy queue, the defaults for the rest).
It sits below both halves (:mod:`swapper.admission`, :mod:`swapper.controller`), so
:mod:`swapper.wiring`, which ``swapper mirror --config`` imports too, need not import the app
(and FastAPI) to build it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from swapper.access.verdicts import OpenAccess, SourceAccess
from swapper.kube.pull_secrets import PullSecrets
from swapper.metrics import Metrics
from swapper.mirror.marks import MarkStore
from swapper.mirror.probe import SourceProbe
from swapper.mirror.queue import CopyQueue
from swapper.mirror.trust import SignatureCheck
from swapper.supervisor import TaskSpec
from swapper.targets.admin import RegistryAdmin
from swapper.targets.base import TargetRegistry


@dataclass
class Backends:
    """The backends the app talks to, handed in by the server (from the wiring) or a test."""

    target: TargetRegistry  # from the wiring: the configured target behind the existence cache
    queue: CopyQueue
    metrics: Metrics = field(default_factory=Metrics)
    # Long-running tasks, started by the app's supervisor in this order (stopped in reverse).
    background: list[TaskSpec] = field(default_factory=list)
    access: SourceAccess = field(default_factory=OpenAccess)
    ready_checks: list[Callable[[], bool]] = field(default_factory=list)  # all true: ready
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)  # on shutdown
    pull_secrets: PullSecrets | None = None  # keeps the target pull secret in namespaces
    probe: SourceProbe | None = None  # what sources serve now (the monitor; heal's revert)
    # Cleanup (``cleanup.enabled``; the controller's leader runs it): the usage marks, read and
    # pushed with the copies' push credentials, and the target's listing and deletes. Without
    # ``admin`` the controller uses ``target`` when that is a RegistryAdmin (a test's
    # MemoryTarget); the wiring's ``target`` is wrapped in the existence cache, which is not.
    marks: MarkStore | None = None
    admin: RegistryAdmin | None = None
    # mirror.verify: the signature check admission asks before a copy and a swap (the copier
    # asks it too). None with rules configured: nothing they apply to is swapped.
    signatures: SignatureCheck | None = None
