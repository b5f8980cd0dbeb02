# syntax=docker/dockerfile:1
# Dialectic: one image for the web server (default command) and the ticker
# (`python manage.py run_ticker`). See docs/deploy.md.

# --- builder: compile mysqlclient and install the pinned runtime requirements into a venv
FROM python:3.11-slim AS builder

RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev libmariadb-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install -r /tmp/requirements.txt

# --- runtime: the venv, the MariaDB client library (not its headers or a compiler), the code
FROM python:3.11-slim AS runtime

RUN apt-get update \
 && apt-get install -y --no-install-recommends libmariadb3 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 dialectic \
 && useradd --system --uid 10001 --gid dialectic --home-dir /app --shell /usr/sbin/nologin dialectic

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=dialectic.settings \
    BIND=0.0.0.0:8000 \
    WEB_CONCURRENCY=2

COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY --chown=dialectic:dialectic . /app

# Static files (pages, admin, API docs): the web process serves them itself (WhiteNoise,
# docs/pages.md); they are also collected at build time. Settings refuse to
# load without a secret key when DEBUG is off, so give collectstatic a throw-away
# one that never reaches the running container.
# /srv/static is where a release step can publish them for a reverse proxy (docs/deploy.md).
RUN DJANGO_SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput \
 && chown -R dialectic:dialectic /app/staticfiles \
 && install -d -o dialectic -g dialectic /srv/static

USER dialectic
EXPOSE 8000

# slim has no curl: ask /healthz with the standard library (200 = database answers).
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os,sys,urllib.request; port=os.environ.get('BIND','0.0.0.0:8000').rsplit(':',1)[1]; sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4).status == 200 else 1)"]

# gunicorn with uvicorn workers: SSE needs ASGI. The ticker uses the same image:
#   docker run ... dialectic python manage.py run_ticker
CMD ["sh", "-c", "exec gunicorn dialectic.asgi:application --worker-class uvicorn_worker.UvicornWorker --workers ${WEB_CONCURRENCY} --bind ${BIND} --graceful-timeout 5 --no-control-socket --access-logfile -"]
