"""bench_crowd's floor: a one-view Django WSGI app with no database and no middleware.

What Django and the HTTP server cost on this machine at this moment, measured
in the same run as the endpoints so that shares of it compare across runs on
a shared, noisy machine. Served by gunicorn's threaded worker (bench_crowd
starts it).
"""

from django.conf import settings
from django.core.wsgi import get_wsgi_application
from django.http import HttpRequest, HttpResponse
from django.urls import path

settings.configure(DEBUG=False, SECRET_KEY="floor-only", ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__, MIDDLEWARE=[])


def hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b'{"status":"ok"}', content_type="application/json")


urlpatterns = [path("", hello)]
application = get_wsgi_application()
