"""The continuation queue (CONTINUATION_QUEUE in the Functions storage account): the adapter that sends a
continuation with a visibility delay (the back-off), creating the queue on first use. Storage exceptions become
domain errors here."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from ..errors import AccessDeniedError, RemediatorError, ServiceError
from .model import ContinuationMessage

if TYPE_CHECKING:
    from azure.storage.queue.aio import QueueClient

logger = logging.getLogger(__name__)
MESSAGE_TTL_SECONDS = 7 * 24 * 3600


def _queue_error(exc: Exception) -> RemediatorError:
    if isinstance(exc, HttpResponseError) and exc.status_code == 403:
        return AccessDeniedError("The Function's identity may not send to the continuation queue.",
                                 reason=str(getattr(exc, "error_code", "") or "AuthorizationPermissionMismatch"),
                                 fix="Assign 'Storage Queue Data Contributor' on the Functions storage account to "
                                     "the Function's managed identity.")
    return ServiceError("The continuation could not be queued in the Functions storage account.",
                        reason=str(getattr(exc, "error_code", None) or type(exc).__name__),
                        fix="Call again: the work resumes from its journal. Check AzureWebJobsStorage and "
                            "CONTINUATION_QUEUE.")


class ContinuationQueue:
    def __init__(self, client: QueueClient) -> None:
        self._client = client

    async def send(self, message: ContinuationMessage, delay_seconds: float) -> None:
        delay = await self.send_text(message.to_json(), delay_seconds)
        logger.info("queued continuation %s of operation %s (%s %s) in %d s", message.attempt,
                    message.operation_id, message.kind.value, message.target, delay)

    async def send_text(self, text: str, delay_seconds: float) -> int:
        """Send one message (a continuation, or the timers' fan-out: shared/fanout.py); returns the delay used."""
        delay = max(0, round(delay_seconds))
        try:
            try:
                await self._client.send_message(text, visibility_timeout=delay, time_to_live=MESSAGE_TTL_SECONDS)
            except ResourceNotFoundError:  # the queue does not exist yet
                try:
                    await self._client.create_queue()
                except ResourceExistsError:
                    pass
                await self._client.send_message(text, visibility_timeout=delay, time_to_live=MESSAGE_TTL_SECONDS)
        except (HttpResponseError, ServiceRequestError, ServiceResponseError) as exc:
            raise _queue_error(exc) from None
        return delay
