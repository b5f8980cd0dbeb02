import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dialectic.settings")
application = get_asgi_application()

from django.conf import settings  # noqa: E402

if settings.DEBUG:
    # The admin's CSS and JS under uvicorn/gunicorn during development (runserver
    # does this itself). Other paths, the SSE stream included, pass straight through.
    # Without DEBUG, run collectstatic and let the proxy serve STATIC_ROOT (docs/admin.md).
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    application = ASGIStaticFilesHandler(application)

# Outermost: bodies refused from their headers before any of the application reads them (docs/security.md).
from dialectic.edge import BodyGuard  # noqa: E402

application = BodyGuard(application)

# After setup: one line per server process saying whether Fabric announcements are on, or what is missing.
from fabric_bridge.config import log_status  # noqa: E402

log_status()
