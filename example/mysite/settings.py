"""Settings for the example project: every secret and path comes from the environment.

The role writes these variables into /etc/<app>/env (plain) and /etc/<app>/secrets.env (root-only).
"""
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
# Persistent, writable state lives outside the release: /var/lib/<app> on a deployed host.
STATE_DIR = Path(os.environ.get("DJANGO_ASGI_STATE_DIR", BASE_DIR / "var"))

SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"
ALLOWED_HOSTS = [h for h in os.environ.get("DJANGO_ALLOWED_HOSTS", "localhost").split(",") if h]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.staticfiles",
    "notes",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]
ROOT_URLCONF = "mysite.urls"
TEMPLATES = []

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DATABASE_PATH", str(STATE_DIR / "db.sqlite3")),
        # Several ASGI workers share one SQLite file: wait for the write lock instead of failing.
        "OPTIONS": {"timeout": 20},
    }
}
# Channels' groups. With REDIS_URL (a secret: it holds Redis's password) every process of every host
# shares one layer; in memory, a broadcast reaches the clients of the process that sent it only.
# Each consumer waits for its messages in a blocking read that Redis ends after 5 s when none came
# (channels_redis's brpop_timeout). redis-py 8 gives every read a 5 s timeout by default, which ends
# that read first: the consumer fails and its WebSocket drops without a close frame. Reads here may
# take longer than the blocking read, and still end if Redis stops answering.
if os.environ.get("REDIS_URL"):
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                  "CONFIG": {"hosts": [{"address": os.environ["REDIS_URL"], "socket_timeout": 15}]}}}
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = os.environ.get("STATIC_ROOT", str(STATE_DIR / "static"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
