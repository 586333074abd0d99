"""Notifications against a local HTTPS webhook on 127.0.0.1 (certificate from the twin's CA): Teams and Slack
payloads, once per state change (state in the state container on Azurite), retried once, never fatal, and no
secret in any payload or log line."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from shared.context import AppContext
from shared.notify import notify_health, notify_rotation, post
from shared.rotation import RotationStatus, rotate_target
from tests.leaks import assert_no_leak
from tests.local_https import serve_https
from tests.rotation_invariants import snapshot
from tests.rotation_support import apply_env, rotation_env
from tests.twin import Fault, Twin
from tests.world import CC_PASSWORD, CURRENT_SECRET, TARGET, World

WEBHOOK_TOKEN = "sig=Wk8Q~webhook-token-0123456789abcdefghij"  # the URL's token (a test value)


class Webhook:
    """A webhook receiver: records each JSON body; answers from `replies` (status, headers), then 200."""

    def __init__(self, twin: Twin) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.requests = 0
        self.replies: list[tuple[int, dict[str, str]]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                owner.requests += 1
                status, headers = owner.replies.pop(0) if owner.replies else (200, {})
                if status < 300:
                    owner.bodies.append(json.loads(raw))
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                return None

        self.server = serve_https(twin, Handler)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}/workflows/remediator/triggers/manual?{WEBHOOK_TOKEN}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def texts(self) -> str:
        return json.dumps(self.bodies)


@pytest.fixture
def webhook(twin: Twin) -> Iterator[Webhook]:
    hook = Webhook(twin)
    yield hook
    hook.close()


def _env(twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch, webhook: Webhook, fmt: str,
         world: World | None = None) -> None:
    env = rotation_env(twin, world or World(secret_end="now+10d"), cc_ca, azurite)
    env.update({"NOTIFY_WEBHOOK_URL": webhook.url, "NOTIFY_FORMAT": fmt})
    apply_env(monkeypatch, env)


def _card(body: dict[str, Any]) -> dict[str, Any]:
    assert body["type"] == "message"
    [attachment] = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"]
    return card


def _card_facts(body: dict[str, Any]) -> dict[str, str]:
    return {f["title"]: f["value"] for b in _card(body)["body"] if b["type"] == "FactSet" for f in b["facts"]}


async def test_health_changes_notify_once_each_in_teams_format(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch, webhook: Webhook) -> None:
    _env(twin, cc_ca, azurite, monkeypatch, webhook, "teams")
    async with AppContext.from_environment() as ctx:
        sent = [await notify_health(ctx, TARGET, status, codes) for status, codes in [
            ("healthy", []), ("failing", ["secret.expired"]), ("failing", ["secret.expired"]), ("error", []),
            ("degraded", ["role.propagating"]), ("degraded", ["role.propagating"]), ("healthy", []),
            ("healthy", [])]]
    assert sent == [0, 1, 0, 0, 1, 0, 1, 0]
    titles = [_card(b)["body"][0]["text"] for b in webhook.bodies]
    assert titles == [f"CycleCloud credential '{TARGET}' is failing", f"CycleCloud credential '{TARGET}' is degraded",
                      f"CycleCloud credential '{TARGET}' recovered"]
    assert _card_facts(webhook.bodies[0])["Findings"] == "secret.expired"


async def test_a_failed_rotation_notifies_once_then_its_recovery_in_slack_format(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch, webhook: Webhook,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    _env(twin, cc_ca, azurite, monkeypatch, webhook, "slack")
    twin.faults.add(Fault(service="cyclecloud", operation="updateAccount", status=400, times=None,
                          body={"code": "InvalidCredentials", "message": "Invalid Azure credentials provided."}))

    async def rotate() -> Any:
        async with AppContext.from_environment() as ctx:
            return await rotate_target(ctx, TARGET, deadline_seconds=120)

    first = await rotate()
    assert first.status is RotationStatus.FAILED
    again = await rotate()  # the same failure at the same stage: no second message
    assert again.status is RotationStatus.FAILED and len(webhook.bodies) == 1
    [failure] = webhook.bodies
    assert failure["blocks"][0]["text"]["text"] == f"Rotation of '{TARGET}' failed at stage push"
    fields = " ".join(f["text"] for f in failure["blocks"][2]["fields"])
    assert "*Stage*\npush" in fields and f"*Operation*\n{first.operation_id}" in fields
    assert failure["text"].startswith(f"Rotation of '{TARGET}' failed")

    twin.faults.clear()
    assert (await rotate()).status is RotationStatus.ROTATED
    assert len(webhook.bodies) == 2 and webhook.bodies[1]["blocks"][0]["text"]["text"] == \
        f"Rotation of '{TARGET}' recovered"
    assert (await rotate()).status is RotationStatus.NOT_DUE and len(webhook.bodies) == 2

    secrets = [CURRENT_SECRET, CC_PASSWORD, WEBHOOK_TOKEN, *snapshot(twin).all_values()]
    assert_no_leak(webhook.texts(), *secrets, min_length=6)
    assert_no_leak(caplog, *secrets, min_length=6)


async def test_an_unconfirmed_push_notifies_once(twin: Twin, cc_ca: str, azurite: str,
                                                 monkeypatch: pytest.MonkeyPatch, webhook: Webhook) -> None:
    from tests.world import CC_HOST

    _env(twin, cc_ca, azurite, monkeypatch, webhook, "teams")
    twin.state.cyclecloud_servers[CC_HOST].masks_secret_fully = True
    async with AppContext.from_environment() as ctx:
        outcome = await rotate_target(ctx, TARGET, deadline_seconds=120)
        assert outcome.push_confirmed is False, outcome.to_dict()
        assert await notify_rotation(ctx, outcome) == 0  # the same operation again: already told
    kinds = [_card(b)["body"][0]["text"] for b in webhook.bodies]
    assert kinds == [f"Push to CycleCloud for '{TARGET}' is unconfirmed"]
    assert _card_facts(webhook.bodies[0])["Operation"] == outcome.operation_id


async def test_the_post_is_retried_once_after_retry_after_and_a_failure_is_never_fatal(
        twin: Twin, webhook: Webhook, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    webhook.replies = [(503, {"Retry-After": "0"})]
    assert await post(webhook.url, {"text": "hello"}) is True
    assert webhook.requests == 2 and webhook.bodies == [{"text": "hello"}]

    webhook.replies = [(500, {}), (500, {}), (500, {})]
    assert await post(webhook.url, {"text": "lost"}) is False
    assert webhook.requests == 4  # one retry, no more
    webhook.replies = [(400, {})]
    assert await post(webhook.url, {"text": "bad"}) is False
    assert webhook.requests == 5  # a 4xx is not retried
    closed = f"https://127.0.0.1:1/hook?{WEBHOOK_TOKEN}"
    assert await post(closed, {"text": "nobody"}) is False  # connection refused, twice, then given up
    assert "failed" in caplog.text and "/workflows/" not in caplog.text
    assert_no_leak(caplog, WEBHOOK_TOKEN)


async def test_the_health_sweep_notifies_a_failing_target(twin: Twin, cc_ca: str, azurite: str,
                                                          monkeypatch: pytest.MonkeyPatch, webhook: Webhook) -> None:
    from shared.diagnosis import check_all_targets

    _env(twin, cc_ca, azurite, monkeypatch, webhook, "teams", World(secret_end="now-2d"))
    async with AppContext.from_environment() as ctx:
        await check_all_targets(ctx)
        await check_all_targets(ctx)
    assert len(webhook.bodies) == 1
    facts = _card_facts(webhook.bodies[0])
    assert facts["Status"] == "failing" and "secret.expired" in facts["Findings"]
    assert_no_leak(webhook.texts(), CURRENT_SECRET, CC_PASSWORD, WEBHOOK_TOKEN, min_length=6)


def test_the_webhook_url_is_never_echoed_by_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.config import load_settings
    from shared.errors import ConfigError

    env = {"KEY_VAULT_URL": "https://kv.vault.azure.net", "TARGETS": "[]",
           "NOTIFY_WEBHOOK_URL": f"http://hooks.example.com/x?{WEBHOOK_TOKEN}", "NOTIFY_FORMAT": "email"}
    with pytest.raises(ConfigError) as raised:
        load_settings(env)
    text = str(raised.value.message)
    assert "NOTIFY_WEBHOOK_URL" in text and "NOTIFY_FORMAT" in text
    assert_no_leak(text, WEBHOOK_TOKEN)
    env["NOTIFY_WEBHOOK_URL"] = "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/hook)"
    env["NOTIFY_FORMAT"] = "slack"
    with pytest.raises(ConfigError, match="could not resolve"):
        load_settings(env)


async def test_concurrent_workers_seeing_the_same_change_send_one_message(
        twin: Twin, cc_ca: str, azurite: str, monkeypatch: pytest.MonkeyPatch, webhook: Webhook) -> None:
    import asyncio

    _env(twin, cc_ca, azurite, monkeypatch, webhook, "slack")
    async with AppContext.from_environment() as one, AppContext.from_environment() as two:
        sent = await asyncio.gather(*(notify_health(ctx, TARGET, "failing", ["secret.expired"])
                                      for ctx in (one, two, one, two)))
    assert sum(sent) == 1 and len(webhook.bodies) == 1, sent
