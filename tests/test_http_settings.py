"""The HTTP API's settings: budget before a 202, the continuation queue and its back-off, the app role changes
need; defaults, and bad values listed with their fix like every other setting."""

from __future__ import annotations

import pytest

from shared.config import OPERATE_ROLE, load_settings
from shared.errors import ConfigError
from tests.world import World


def test_defaults() -> None:
    settings = load_settings(World().env())
    assert settings.http_budget_seconds == 30
    assert settings.continuation_queue == "remediator-continuations"
    assert settings.continuation_backoff_seconds == 30
    assert settings.require_app_role is None
    assert settings.queue_service_uri is None


@pytest.mark.parametrize("value, role", [("true", OPERATE_ROLE), ("ON", OPERATE_ROLE), ("false", None), ("", None),
                                         ("Remediator.Admin", "Remediator.Admin")])
def test_require_app_role(value: str, role: str | None) -> None:
    assert load_settings({**World().env(), "REQUIRE_APP_ROLE": value}).require_app_role == role


def test_identity_based_queue_endpoint() -> None:
    env = {**World().env(), "AzureWebJobsStorage__accountName": "stremediator"}
    assert load_settings(env).queue_service_uri == "https://stremediator.queue.core.windows.net"


def test_bad_values_are_listed_with_their_fix() -> None:
    env = {**World().env(), "HTTP_BUDGET_SECONDS": "300", "CONTINUATION_QUEUE": "Bad_Queue",
           "CONTINUATION_BACKOFF_SECONDS": "soon", "REQUIRE_APP_ROLE": "role with spaces\r\n"}
    with pytest.raises(ConfigError) as raised:
        load_settings(env)
    problems = raised.value.problems
    assert any(p.startswith("HTTP_BUDGET_SECONDS: '300' is not a number of seconds from 5 to 200") for p in problems)
    assert any(p.startswith("CONTINUATION_QUEUE: 'Bad_Queue' is not a storage queue name") for p in problems)
    assert any(p.startswith("CONTINUATION_BACKOFF_SECONDS:") for p in problems)
    assert any(p.startswith("REQUIRE_APP_ROLE:") for p in problems)
