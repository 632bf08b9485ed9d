"""The in-memory doubles live in modules of their own, which nothing ``swapper serve`` or
``swapper mirror`` runs imports."""

from __future__ import annotations

import subprocess
import sys

DOUBLES = ("swapper.mirror.memory", "swapper.kube.memory", "swapper.targets.memory")


def test_the_modules_swapper_serve_and_mirror_run_import_no_test_double() -> None:
    script = (
        "import sys\n"
        "import swapper.admission.server, swapper.wiring, swapper.mirror.command\n"
        f"print(sorted(name for name in {DOUBLES!r} if name in sys.modules))\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    assert found.strip() == "[]"


def test_each_double_implements_its_protocol() -> None:
    from swapper.access.verdicts import SourceAccess
    from swapper.kube.memory import MemoryPullSecrets
    from swapper.kube.pull_secrets import PullSecrets
    from swapper.mirror.memory import MemoryAccess, MemoryCopyQueue
    from swapper.mirror.queue import CopyQueue
    from swapper.targets.base import TargetRegistry
    from swapper.targets.memory import MemoryTarget

    target = MemoryTarget("mirror.local/m")
    assert isinstance(MemoryCopyQueue(target), CopyQueue)
    assert isinstance(MemoryAccess(), SourceAccess)
    assert isinstance(MemoryPullSecrets(), PullSecrets)
    assert isinstance(target, TargetRegistry)
