"""Delivering what the timers queue (shared/fanout.py) as the Functions host's queue trigger would, for tests
that run a timer and then look at its effects: each message goes to `resume_operation` and is deleted when the
function returns."""

from __future__ import annotations

import os
from typing import Any

from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from shared.config import DEFAULT_CONTINUATION_QUEUE


def _queue() -> QueueClient:
    codec: dict[str, Any] = {"message_encode_policy": TextBase64EncodePolicy(),
                             "message_decode_policy": TextBase64DecodePolicy()}
    return QueueClient.from_connection_string(os.environ["AzureWebJobsStorage"],
                                              os.environ.get("CONTINUATION_QUEUE") or DEFAULT_CONTINUATION_QUEUE,
                                              **codec)


def deliver_through_host(host: Any) -> int:
    """Every visible message to the worker's resume_operation (a FunctionsHost); returns how many."""
    queue, delivered = _queue(), 0
    for message in queue.receive_messages(max_messages=32, visibility_timeout=60):
        host.queue("resume_operation", message.content, message_id=message.id,
                   dequeue_count=message.dequeue_count or 1)
        queue.delete_message(message)
        delivered += 1
    return delivered


async def deliver_in_process() -> int:
    """Every visible message to function_app.resume_operation in this event loop (the app's clients are bound
    to it); returns how many."""
    import azure.functions as func

    import function_app

    handler = function_app.resume_operation.build().get_user_function()
    queue, delivered = _queue(), 0
    for message in queue.receive_messages(max_messages=32, visibility_timeout=60):
        await handler(func.QueueMessage(id=message.id, body=message.content.encode("utf-8")))
        queue.delete_message(message)
        delivered += 1
    return delivered
