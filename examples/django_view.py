"""The same backend as Django views (README, "Producer API").

    POST /enhance           an uploaded image (``image``) or a ``url`` form field,
                            ``provider`` and ``model`` -> 202 {"job_id", "status_url"}
    GET  /enhance/<job_id>  the job's state and error, and once it succeeded an HTTPS
                            ``output_url``
    POST /hooks/enhance     the webhook receiver: checks the signature, deduplicates on
                            ``webhook-id``, hands the event to ``on_event``

Wire it into a project with ``path("", include("examples.django_view"))``, or copy the
views; the process needs the workers' environment (``REDIS_URL``, ``CELERY_BROKER_URL``,
``S3_*``, ``WEBHOOK_SECRET``) and ``ENHANCE_WEBHOOK_URL`` where the workers reach
``/hooks/enhance``. Standalone, for a try::

    DJANGO_SECRET_KEY=... python -m examples.django_view runserver

Django views are synchronous, so they call the synchronous API. Every error of the
producer API carries the HTTP status to answer with (``status_code``). Tested against the
real stack in ``tests/examples/test_django_view.py``. Django comes with the ``examples``
extra (``pip install -e '.[examples]'``).
"""

from __future__ import annotations

# README >>>
import functools
import os

from django.http import HttpResponse, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from tasks.producer import EnhanceError, InvalidInput, enqueue, get_job, output_url, verify_webhook

seen: dict[str, dict] = {}  # webhook-id -> event: keep it in your database


def answers_errors(view):
    @functools.wraps(view)
    def wrapped(request, *args, **kwargs):
        try:
            return view(request, *args, **kwargs)
        except EnhanceError as exc:
            return JsonResponse({"error": exc.code, "message": exc.message},
                                status=exc.status_code)
    return wrapped


@csrf_exempt  # an API your frontend calls with its own auth; keep CSRF for cookie sessions
@require_POST
@answers_errors
def enhance(request):
    image, url = request.FILES.get("image"), request.POST.get("url")
    if (image is None) == (url is None):
        raise InvalidInput("send an image file or a url")
    if url is not None and not url.lower().startswith(("https://", "http://")):
        raise InvalidInput("url must be http(s)")  # enqueue also reads paths and s3:// URIs
    job_id = enqueue(image if image else url, request.POST.get("provider", "picwish"),
                     request.POST.get("model") or None,
                     filename=image.name if image else None,
                     idempotency_key=request.headers.get("Idempotency-Key"),
                     webhook=os.environ.get("ENHANCE_WEBHOOK_URL"))
    return JsonResponse({"job_id": job_id, "status_url": f"/enhance/{job_id}"}, status=202)


@require_GET
@answers_errors
def job_status(request, job_id):
    job = get_job(job_id)  # 404 for an unknown id
    done = job.state.value == "succeeded"
    return JsonResponse({"job_id": job.id, "state": job.state.value,
                         "output_url": output_url(job_id, expires_in=3600) if done else None,
                         "error": job.error.model_dump() if job.error else None})


@csrf_exempt  # the signature is the authentication
@require_POST
@answers_errors
def webhook(request):
    event = verify_webhook(request.body, request.headers)  # 400 unless signed
    if request.headers["webhook-id"] not in seen:  # deliveries come at least once
        seen[request.headers["webhook-id"]] = event
        on_event(event)
    return HttpResponse(status=204)


urlpatterns = [path("enhance", enhance), path("enhance/<str:job_id>", job_status),
               path("hooks/enhance", webhook)]
# <<< README


def on_event(event: dict) -> None:
    """Your code: mark the order done, send the user ``event["data"]["output_url"]``..."""


if __name__ == "__main__":
    import sys

    from django.conf import settings
    from django.core.management import execute_from_command_line

    settings.configure(ROOT_URLCONF=__name__, SECRET_KEY=os.environ["DJANGO_SECRET_KEY"],
                       ALLOWED_HOSTS=os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost").split(","))
    execute_from_command_line(sys.argv)
