"""A dispatcher that records what a step would send instead of sending it."""

from __future__ import annotations


class RecordingDispatcher:
    def __init__(self) -> None:
        self.sent: list[tuple] = []
        self.waiting = 0  # submit messages in the broker's queue
        self.waited: dict[str, float] = {}  # poll token -> the ``waited`` it was sent with

    def admit(self, provider, token, countdown_s=0):
        self.sent.append(("admit", provider, token, countdown_s))

    def submit(self, job_id, countdown_s=0):
        self.sent.append(("submit", job_id))

    def submit_many(self, jobs):
        for job_id, countdown_s in jobs:
            self.submit(job_id, countdown_s)

    def poll(self, job_id, token, countdown_s, waited=False):
        self.sent.append(("poll", job_id, token, countdown_s))
        self.waited[token] = waited

    def store(self, job_id, countdown_s=0):
        self.sent.append(("store", job_id))

    def waiting_submits(self):
        return self.waiting
