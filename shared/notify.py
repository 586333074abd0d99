"""Notifications: a short message to a Teams workflow (Adaptive Card) or a Slack incoming webhook when a target's
state changes: a rotation fails, a target becomes failing or degraded, a push cannot be confirmed, and when it
recovers.

* Optional: only with NOTIFY_WEBHOOK_URL (in Azure a Key Vault reference: the URL carries its own token, so it
  is a registered secret, and only its host is ever logged). NOTIFY_FORMAT chooses the payload.
* Once per change: the last state notified is kept per target in the state container (`notify/<target>.json`)
  and claimed with an ETag before posting, so two workers never send the same change twice.
* Never fatal and never a secret: the post has a timeout, is retried once (after Retry-After, bounded), and a
  failure is logged; every text passes `redaction.scrub`.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .redaction import scrub

if TYPE_CHECKING:
    from .context import AppContext

logger = logging.getLogger(__name__)

NOTIFY_PREFIX = "notify/"
POST_TIMEOUT_SECONDS = 10.0
RETRY_AFTER_CAP_SECONDS = 10.0  # a hint longer than this is not worth holding a timer for
DEFAULT_RETRY_SECONDS = 2.0
CLAIM_ATTEMPTS = 3
ALERTING = ("failing", "degraded")


def notify_blob(target: str) -> str:
    return f"{NOTIFY_PREFIX}{target}.json"


@dataclass
class Notification:
    target: str
    kind: str  # rotation_failed | failing | degraded | unconfirmed | recovered
    title: str
    text: str
    facts: dict[str, str] = field(default_factory=dict)


# -- what changed --------------------------------------------------------------------------------------------


def health_change(state: dict[str, Any], target: str, status: str, codes: list[str]) -> Notification | None:
    """Updates `state` in place; returns the notification the change calls for, if any."""
    previous = state.get("health")
    if status not in (*ALERTING, "healthy") or status == previous:
        return None  # "error" (the check could not run) is no new state: the next check tells
    state["health"] = status
    findings = ", ".join(codes) or "none"
    if status in ALERTING:
        return Notification(target, status, f"CycleCloud credential '{target}' is {status}",
                            f"The health check found: {findings}. Run `python -m shared validate {target}` or "
                            f"POST /api/targets/{target}/validate for the explanation and the fix.",
                            {"Target": target, "Status": status, "Findings": findings})
    if previous in ALERTING:
        return Notification(target, "recovered", f"CycleCloud credential '{target}' recovered",
                            f"The health check finds the target healthy again (it was {previous}).",
                            {"Target": target, "Status": "healthy", "Was": str(previous)})
    return None


def rotation_change(state: dict[str, Any], outcome: Any) -> list[Notification]:
    """Updates `state` in place; returns the notifications a rotation outcome calls for (RotationOutcome)."""
    target, status = outcome.target, outcome.status.value
    out: list[Notification] = []
    error = outcome.error or {}
    stage = outcome.stage.value if outcome.stage else str(error.get("stage") or "-")
    if status == "failed":
        code = str(error.get("code") or "unknown")
        key = f"{outcome.operation_id or '-'}:{stage}:{code}"
        if state.get("rotation") != key:
            state["rotation"] = key
            out.append(Notification(target, "rotation_failed", f"Rotation of '{target}' failed at stage {stage}",
                                    str(error.get("message") or outcome.message),
                                    {"Target": target, "Stage": stage, "Code": code,
                                     "Operation": outcome.operation_id or "-"}))
    elif status in ("rotated", "not_due"):
        if state.get("rotation") not in (None, "ok"):
            out.append(Notification(target, "recovered", f"Rotation of '{target}' recovered",
                                    outcome.message, {"Target": target, "Status": status,
                                                      "Operation": outcome.operation_id or "-"}))
        state["rotation"] = "ok"
    if outcome.push_confirmed is False and outcome.operation_id and state.get("unconfirmed") != outcome.operation_id:
        state["unconfirmed"] = outcome.operation_id
        out.append(Notification(target, "unconfirmed", f"Push to CycleCloud for '{target}' is unconfirmed",
                                "CycleCloud's read-back could not confirm it holds the new secret; the replaced "
                                "credential is kept until it can. Check the account in CycleCloud.",
                                {"Target": target, "Operation": outcome.operation_id}))
    return out


# -- payloads ------------------------------------------------------------------------------------------------


def payload(note: Notification, fmt: str) -> dict[str, Any]:
    """The JSON body for a Teams workflow ("Post to a channel when a webhook request is received": a message
    with an Adaptive Card attachment) or a Slack incoming webhook (text plus blocks)."""
    title, text = scrub(note.title), scrub(note.text)
    facts = {scrub(k): scrub(v) for k, v in note.facts.items()}
    if fmt == "slack":
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
            {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}},
        ]
        if facts:
            blocks.append({"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"[:2000]}
                                                         for k, v in list(facts.items())[:10]]})
        return {"text": f"{title}: {text}"[:3000], "blocks": blocks}
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "text": title, "weight": "Bolder", "size": "Medium", "wrap": True,
             "color": "Good" if note.kind == "recovered" else "Attention"},
            {"type": "TextBlock", "text": text, "wrap": True},
            {"type": "FactSet", "facts": [{"title": k, "value": v} for k, v in facts.items()]},
        ],
    }
    return {"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
                                                "contentUrl": None, "content": card}]}


# -- sending ---------------------------------------------------------------------------------------------------


def _retry_delay(headers: Any) -> float:
    raw = headers.get("Retry-After") if headers is not None else None
    try:
        return max(0.0, min(float(raw), RETRY_AFTER_CAP_SECONDS)) if raw else DEFAULT_RETRY_SECONDS
    except ValueError:
        return DEFAULT_RETRY_SECONDS


async def post(url: str, body: dict[str, Any], *, attempts: int = 2) -> bool:
    """POST the body; retried once on a connection failure, a timeout, 429 or 5xx. Returns whether it arrived.
    Logs only the webhook's host: the rest of the URL is its token."""
    import aiohttp

    host = urlsplit(url).hostname or "?"
    data = json.dumps(body).encode("utf-8")
    timeout = aiohttp.ClientTimeout(total=POST_TIMEOUT_SECONDS)
    async with aiohttp.ClientSession(timeout=timeout, trust_env=True) as session:
        for attempt in range(1, attempts + 1):
            delay = DEFAULT_RETRY_SECONDS
            try:
                async with session.post(url, data=data, headers={"Content-Type": "application/json"}) as response:
                    await response.read()
                    if response.status < 300:
                        return True
                    retryable = response.status == 429 or response.status >= 500
                    delay = _retry_delay(response.headers)
                    problem = f"HTTP {response.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                retryable, problem = True, type(exc).__name__
            if not retryable or attempt == attempts:
                logger.warning("notification to %s failed (%s); not retried further", host, problem)
                return False
            logger.info("notification to %s failed (%s); retrying in %.0f s", host, problem, delay)
            await asyncio.sleep(delay)
    return False


# -- state and the entry points ----------------------------------------------------------------------------------


async def _claim(ctx: AppContext, target: str,
                 decide: Callable[[dict[str, Any]], list[Notification]]) -> list[Notification]:
    """Read the target's notified state, let `decide` change it, and store it only if nobody else did meanwhile
    (ETag); the notifications are sent only by the caller whose write won."""
    from azure.core import MatchConditions
    from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError

    from .state_container import state_container

    container = state_container(ctx)
    blob = container.blob(notify_blob(target))
    for _ in range(CLAIM_ATTEMPTS):
        try:
            downloader = await blob.download_blob()
            state = json.loads(await downloader.readall())
            etag: str | None = downloader.properties.etag
        except ResourceNotFoundError:
            state, etag = {}, None
        if not isinstance(state, dict):
            state = {}
        before = dict(state)
        notes = decide(state)
        if state == before:
            return notes
        data = json.dumps({"schema": 1, **{k: v for k, v in state.items() if k != "schema"}}).encode("utf-8")
        try:
            if etag is None:
                await container.creating(partial(blob.upload_blob, data, overwrite=False))
            else:
                await blob.upload_blob(data, overwrite=True, etag=etag, match_condition=MatchConditions.IfNotModified)
            return notes
        except (ResourceExistsError, ResourceModifiedError):
            continue  # another worker changed it first: decide again on what it wrote
    return []


async def _send(ctx: AppContext, target: str, decide: Callable[[dict[str, Any]], list[Notification]]) -> int:
    url = ctx.settings.notify_webhook_url
    if not url:
        return 0
    try:
        notes = await _claim(ctx, target, decide)
    except Exception as exc:  # no state, no notification: never fail the operation for it
        logger.warning("notification state of %s could not be read or written: %s", target, type(exc).__name__)
        return 0
    sent = 0
    for note in notes:
        try:
            sent += await post(url, payload(note, ctx.settings.notify_format))
        except Exception as exc:
            logger.warning("notification %s for %s failed: %s", note.kind, target, type(exc).__name__)
    return sent


async def notify_health(ctx: AppContext, target: str, status: str, codes: list[str]) -> int:
    """After a health check: notify when the target becomes failing/degraded, or healthy again."""

    def decide(state: dict[str, Any]) -> list[Notification]:
        note = health_change(state, target, status, codes)
        return [note] if note else []

    return await _send(ctx, target, decide)


async def notify_rotation(ctx: AppContext, outcome: Any) -> int:
    """After a rotation: notify on failure (once per operation, stage and code), an unconfirmed push, recovery."""
    return await _send(ctx, outcome.target, lambda state: rotation_change(state, outcome))
