"""The worker's delivery threads: webhook deliveries run beside the queue's jobs, not inside them.

A dispatch job only turns events into deliveries and wakes these threads; it never waits for a
receiver. So a receiver that hangs until the timeout holds up one thread and its own endpoint's
later deliveries (one in flight per endpoint, see delivery.claim_next), while the next dispatch
job, other endpoints' deliveries, emails and the sweep go on.

Each thread claims and sends until nothing is left that it may take, then sleeps until woken (a
dispatch job, the minute sweep) or IDLE_RECHECK passes, which also picks up retries coming due.
"""

from __future__ import annotations

import logging
import threading

from flask import Flask

from shared.webhooks import delivery

log = logging.getLogger("keyward.webhooks")
IDLE_RECHECK = 10.0  # seconds an idle thread sleeps before looking for due retries on its own


class DeliveryPool:
    def __init__(self, app: Flask, size: int):
        self.app = app
        self.size = size
        self._wakeups = 0
        self._stopping = False
        self._condition = threading.Condition()
        self._threads: list[threading.Thread] = []

    def start(self) -> DeliveryPool:
        for n in range(self.size):
            thread = threading.Thread(target=self._run, name=f"keyward-webhooks-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def wake(self) -> None:
        """There may be new due deliveries: every idle thread looks."""
        with self._condition:
            self._wakeups += 1
            self._condition.notify_all()

    def stop(self, timeout: float = 30.0) -> None:
        """Let each thread finish the delivery in hand (a send ends within its timeout), then end."""
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        for thread in self._threads:
            thread.join(timeout)

    def _run(self) -> None:
        with self.app.app_context():
            while not self._stopping:
                with self._condition:
                    seen = self._wakeups
                try:
                    claim = delivery.claim_next()
                except Exception:  # database unreachable: try again after a pause
                    log.warning("could not claim a webhook delivery", exc_info=True)
                    claim = None
                if claim is not None:
                    self._attempt(claim)
                    continue
                with self._condition:  # a wake-up since `seen` means: look again at once
                    if self._wakeups == seen and not self._stopping:
                        self._condition.wait(IDLE_RECHECK)

    def _attempt(self, claim: delivery.Claim) -> None:
        try:
            delivery.attempt(claim)
        except Exception:  # the lease runs out and the delivery is tried again
            log.warning("could not record a webhook delivery attempt", exc_info=True)
