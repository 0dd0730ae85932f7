"""The project's own ASGI application: Django for HTTP, Channels for WebSockets.

Deployed hosts serve it through the role's entry point with `django_asgi_application:
mysite.asgi:application`, which sets the settings default first and wraps this object in the
configured ASGI middleware and the role's layers. Without that variable the role serves Django's
plain `get_asgi_application()`, and WebSockets are refused.
"""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

# Django first: it sets up the apps the consumers' imports need.
django_application = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from notes.consumers import EchoConsumer  # noqa: E402

application = ProtocolTypeRouter({
    "http": django_application,
    "websocket": URLRouter([path("ws/echo/", EchoConsumer.as_asgi())]),
})
