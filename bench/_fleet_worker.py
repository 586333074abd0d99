"""One simulated Functions instance for bench/fleet.py: drains the continuation queue as the host's queue trigger
does with host.json's settings (it fetches up to batchSize messages, works on them at once, and fetches the next
batch when no more than newBatchThreshold are still running; an empty queue is polled with a growing interval),
each message through what function_app.resume_operation calls, deleted when it returns; exits when the queue is
empty. Prints its peak RSS, CPU and message count as JSON."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
from pathlib import Path
from typing import Any

HOST_JSON = Path(__file__).resolve().parent.parent / "host.json"
FIRST_POLL_SECONDS, LAST_POLL_SECONDS = 0.1, 2.0  # the empty-queue back-off (the host's grows to maxPollingInterval)


def queue_settings() -> tuple[int, int]:
    """host.json's batchSize and newBatchThreshold."""
    queues = json.loads(HOST_JSON.read_text())["extensions"]["queues"]
    return int(queues["batchSize"]), int(queues["newBatchThreshold"])


async def drain(batch_size: int, new_batch_threshold: int) -> int:
    from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy
    from azure.storage.queue.aio import QueueClient

    from shared.context import AppContext
    from shared.fanout import is_health_check, run_health_check
    from shared.operations import resume_operation

    # the simulated host's own queue client (the real host's is .NET): Azurite is local, so no proxy lookups
    codec: dict[str, Any] = {"message_encode_policy": TextBase64EncodePolicy(),
                             "message_decode_policy": TextBase64DecodePolicy(), "use_env_settings": False}
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

        poll = FIRST_POLL_SECONDS
        while True:
            received = []
            if len(in_flight) <= new_batch_threshold:
                received = [m async for m in queue.receive_messages(max_messages=batch_size,
                                                                    visibility_timeout=600)]
            for message in received:
                handled += 1
                task = asyncio.ensure_future(deliver(message))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            poll = FIRST_POLL_SECONDS if received else min(LAST_POLL_SECONDS, poll * 2)
            if in_flight and (received or len(in_flight) > new_batch_threshold):
                await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            elif in_flight:  # the queue was empty: look again when one finishes or the poll interval passed
                await asyncio.wait(in_flight, timeout=poll, return_when=asyncio.FIRST_COMPLETED)
            elif not (await queue.get_queue_properties()).approximate_message_count:
                return handled  # nothing queued, nothing invisible: the fleet is done
            else:
                await asyncio.sleep(poll)  # others hold messages, or continuations wait for their back-off


def run() -> None:
    handled = asyncio.run(drain(*queue_settings()))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"messages": handled, "rss_mb": usage.ru_maxrss / 1024,
                      "cpu": usage.ru_utime + usage.ru_stime}), flush=True)
    sys.stderr.flush()
    os._exit(0)  # an instance does not tear its interpreter down after its messages: that is not the fleet's time


if __name__ == "__main__":
    run()
