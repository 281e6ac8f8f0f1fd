"""Names that are part of the system's shape, not deployment settings."""

from providers.constants import USER_AGENT  # noqa: F401 (re-exported; defined below us)

#: Admission runs: one chain per provider lets queued jobs through to the submit queue.
ADMIT_QUEUE = "enhance.admit"
#: New submissions: the only queue whose tasks spend money.
SUBMIT_QUEUE = "enhance.submit"
#: Countdown-scheduled polls of jobs the provider is working on.
POLL_QUEUE = "enhance.poll"
#: Copies of finished results into S3 (and server-side copies of reused results); never
#: waits behind submissions or the provider budget.
STORE_QUEUE = "enhance.store"
#: Webhook deliveries and ``on_done`` callbacks of jobs that ended (``tasks.notify``):
#: short HTTP calls to the backend's receivers, never behind the provider's queues.
NOTIFY_QUEUE = "enhance.notify"
#: The periodic reconcile task and other housekeeping.
MAINTENANCE_QUEUE = "enhance.maintenance"

ALL_QUEUES = (ADMIT_QUEUE, SUBMIT_QUEUE, POLL_QUEUE, STORE_QUEUE, NOTIFY_QUEUE,
              MAINTENANCE_QUEUE)
