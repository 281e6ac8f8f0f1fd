"""Names the provider clients need that are part of the system's shape, not settings.

``workers.constants`` re-exports them: the bottom layer owns what it uses.
"""

#: The name the project gives itself in User-Agent headers and S3 metadata.
USER_AGENT = "enhance-queue/0.1 (+https://github.com/enhance-queue/enhance-queue)"
