"""The project's own ASGI entry point, as `startproject` makes it.

Deployed hosts run the role's templated entry point instead, which adds the settings default and
the configured ASGI middleware around this same `get_asgi_application()`.
"""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

application = get_asgi_application()
