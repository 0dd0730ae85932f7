"""Views the demo and the tests talk to. None of them ever returns a secret's value."""
import asyncio
import hashlib
import json
import os
import pwd
import signal

from django.http import HttpResponseNotAllowed, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from .models import Note


def _release():
    return os.environ.get("DJANGO_ASGI_RELEASE", "unknown")


def index(request):
    return JsonResponse({"app": "example", "release": _release(), "message": "Hello from Django over ASGI"})


def health(request):
    # The tests make a built release unhealthy at run time with a file in the state directory.
    # ... or, for every release, with an environment value (a broken configuration, not broken code).
    marker = os.path.join(os.environ.get("DJANGO_ASGI_STATE_DIR", "/nonexistent"), "unhealthy-" + _release())
    if os.path.exists(marker) or os.environ.get("EXAMPLE_HEALTH") == "fail":
        return JsonResponse({"status": "unhealthy", "release": _release()}, status=503)
    return JsonResponse({"status": "ok", "release": _release()})


async def async_view(request):
    await asyncio.sleep(0)
    return JsonResponse({"async": True, "asgi": request.scope.get("type") == "http", "release": _release()})


async def slow(request):
    """Answers after ?seconds= (at most 10): lets a test hold a request open across a restart."""
    seconds = min(float(request.GET.get("seconds", "2")), 10.0)
    await asyncio.sleep(seconds)
    return JsonResponse({"slept": seconds, "release": _release()})


async def events(request):
    """Server-sent events from an async iterator: ?count= events (at most 100), ?interval= s apart."""
    count = min(int(request.GET.get("count", "5")), 100)
    interval = min(float(request.GET.get("interval", "0.1")), 5.0)

    async def stream():
        for n in range(count):
            yield f"id: {n}\ndata: {json.dumps({'n': n, 'release': _release()})}\n\n"
            await asyncio.sleep(interval)

    response = StreamingHttpResponse(stream(), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    # Proxies that buffer (nginx) pass each event on at once.
    response["X-Accel-Buffering"] = "no"
    return response


def whoami(request):
    secret = os.environ.get("EXAMPLE_API_TOKEN", "")
    return JsonResponse(
        {
            "uid": os.getuid(),
            "user": pwd.getpwuid(os.getuid()).pw_name,
            "greeting": os.environ.get("EXAMPLE_GREETING", ""),
            # A digest lets a test check the secret arrived without the secret travelling back.
            "secret_sha256": hashlib.sha256(secret.encode()).hexdigest() if secret else "",
            "settings_module": os.environ.get("DJANGO_SETTINGS_MODULE", ""),
            # What a proxy in front forwarded, as it reached the app.
            "forwarded_for": request.META.get("HTTP_X_FORWARDED_FOR", ""),
            "forwarded_proto": request.META.get("HTTP_X_FORWARDED_PROTO", ""),
        }
    )


@csrf_exempt
def notes(request):
    if request.method == "POST":
        text = json.loads(request.body or b"{}").get("text", "")
        note = Note.objects.create(text=text[:200])
        if request.GET.get("then") == "die":
            # The tests' replay check: the row is written, then the worker dies before it answers.
            os.kill(os.getpid(), signal.SIGKILL)
        return JsonResponse({"id": note.id, "text": note.text}, status=201)
    if request.method == "GET":
        return JsonResponse({"count": Note.objects.count(), "texts": list(Note.objects.values_list("text", flat=True))})
    return HttpResponseNotAllowed(["GET", "POST"])
