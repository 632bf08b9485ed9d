from __future__ import annotations

from collections.abc import Iterator

import pytest
from helpers import FIXTURES
from webhook_process import Webhook, start_webhook, stop


@pytest.fixture(scope="session")
def webhook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webhook]:
    hook = start_webhook(tmp_path_factory.mktemp("enforce"), FIXTURES / "configs" / "webhook.yaml")
    yield hook
    stop(hook)


@pytest.fixture(scope="session")
def audit_webhook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webhook]:
    hook = start_webhook(
        tmp_path_factory.mktemp("audit"), FIXTURES / "configs" / "webhook.yaml", "--dry-run"
    )
    yield hook
    stop(hook)
