import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dialectic.settings")
application = get_asgi_application()

# After setup: one line per server process saying whether Fabric announcements are on, or what is missing.
from fabric_bridge.config import log_status  # noqa: E402

log_status()
