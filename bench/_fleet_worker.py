"""One simulated Functions instance for bench/fleet.py: drains the continuation queue as the host's queue trigger
does (at most `batch` messages at once: host.json batchSize + newBatchThreshold), each message through what
function_app.resume_operation calls, deleted when it returns; exits when the queue is empty. Prints its peak
RSS, CPU and message count as JSON."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
from typing import Any


async def drain(batch: int) -> int:
    from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy
    from azure.storage.queue.aio import QueueClient

    from shared.context import AppContext
    from shared.fanout import is_health_check, run_health_check
    from shared.operations import resume_operation

    codec: dict[str, Any] = {"message_encode_policy": TextBase64EncodePolicy(),
                             "message_decode_policy": TextBase64DecodePolicy()}
    handled = 0
    async with AppContext.from_environment() as ctx, QueueClient.from_connection_string(
            os.environ["AzureWebJobsStorage"], os.environ["CONTINUATION_QUEUE"], **codec) as queue:
        in_flight: set[asyncio.Task[None]] = set()

        async def deliver(message: Any) -> None:
            try:
                if is_health_check(message.content):
                    await run_health_check(ctx, message.content)
                else:
                    await resume_operation(ctx, message.content, dequeue_count=message.dequeue_count or 1,
                                           message_id=message.id)
            except Exception:  # the host would redeliver it after the visibility timeout: at once here
                await queue.update_message(message, visibility_timeout=0)
                return
            await queue.delete_message(message)

        while True:
            free = batch - len(in_flight)
            received = [m async for m in queue.receive_messages(max_messages=free, visibility_timeout=600)] \
                if free > 0 else []
            for message in received:
                handled += 1
                task = asyncio.ensure_future(deliver(message))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            if in_flight:
                await asyncio.wait(in_flight, timeout=0.2, return_when=asyncio.FIRST_COMPLETED)
            elif not received:
                if not (await queue.get_queue_properties()).approximate_message_count:
                    return handled  # nothing queued, nothing invisible: the fleet is done
                await asyncio.sleep(0.3)  # others hold messages, or continuations wait for their back-off


def run() -> None:
    handled = asyncio.run(drain(int(sys.argv[1]) if len(sys.argv) > 1 else 6))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"messages": handled, "rss_mb": usage.ru_maxrss / 1024,
                      "cpu": usage.ru_utime + usage.ru_stime}))


if __name__ == "__main__":
    run()
