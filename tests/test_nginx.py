"""docs/nginx.conf, the configuration docs/security.md shows, run for real in front of a real server.

The file is used as written; only what a deployment replaces is replaced
(ports, certificate paths, the static root). nginx must be installed
(``.ci/run`` installs it when missing).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from django.db import transaction
from django.utils import timezone

from devtools.processes import BASE_DIR, free_port, stream_server, wait_for
from topics import transitions

pytestmark = pytest.mark.django_db(transaction=True)

CONF = BASE_DIR / "docs" / "nginx.conf"
HOST = "debate.example.com"


def nginx_binary() -> str:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)
    assert found, "nginx is not installed: apt-get install -y nginx (.ci/run does it)"
    return found


def render(tmp: Path, *, upstream: int, http: int, https: int) -> Path:
    """The doc's file with a deployment's values, inside a minimal nginx.conf whose state lives in ``tmp``."""
    text = CONF.read_text()
    replacements = {
        "server 127.0.0.1:8000;": f"server 127.0.0.1:{upstream};",
        "listen 80;": f"listen 127.0.0.1:{http};",
        "listen 443 ssl;": f"listen 127.0.0.1:{https} ssl;",
        "/etc/ssl/dialectic/": f"{tmp}/",
        "/srv/dialectic/staticfiles/": f"{tmp}/static/",
    }
    for old, new in replacements.items():
        assert old in text, f"docs/nginx.conf no longer contains {old!r}"
        text = text.replace(old, new)
    (tmp / "dialectic.conf").write_text(text)
    (tmp / "static").mkdir()
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={HOST}",
         "-keyout", tmp / "privkey.pem", "-out", tmp / "fullchain.pem"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    temp_paths = "".join(
        f"    {kind}_temp_path {tmp}/{kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    main = tmp / "nginx.conf"
    main.write_text(
        f"pid {tmp}/nginx.pid;\nerror_log {tmp}/error.log warn;\ndaemon off;\n"
        "events { worker_connections 256; }\n"
        f"http {{\n    access_log off;\n{temp_paths}    include {tmp}/dialectic.conf;\n}}\n"
    )
    return main


@pytest.fixture
def proxied(tmp_path) -> Iterator[tuple[str, str]]:
    """(https base, http base) of nginx in front of a server with DJANGO_BEHIND_TLS_PROXY on."""
    nginx = nginx_binary()
    env = {"DJANGO_BEHIND_TLS_PROXY": "on", "DJANGO_ALLOWED_HOSTS": f"{HOST},127.0.0.1,localhost"}
    with stream_server(env) as server:
        http, https = free_port(), free_port()
        # Worker processes run as nobody when started by root; the state directory must be theirs to use.
        tmp_path.chmod(0o755)
        main = render(tmp_path, upstream=server.port, http=http, https=https)
        checked = subprocess.run([nginx, "-t", "-c", str(main), "-p", str(tmp_path)], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr
        proc = subprocess.Popen([nginx, "-c", str(main), "-p", str(tmp_path)], stderr=subprocess.PIPE)
        try:
            server.wait_healthy()
            base = f"https://127.0.0.1:{https}"

            def up() -> bool:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else "nginx exited"
                try:
                    return httpx.get(f"{base}/healthz", headers={"Host": HOST}, verify=False, timeout=2).is_success
                except httpx.TransportError:
                    return False

            wait_for(up, timeout=20, interval=0.1, message="nginx did not answer")
            yield base, f"http://127.0.0.1:{http}"
        finally:
            proc.terminate()
            proc.wait(10)


def get(url: str, **kwargs) -> httpx.Response:
    return httpx.get(url, headers={"Host": HOST, **kwargs.pop("headers", {})}, verify=False, timeout=10, **kwargs)


def test_the_documented_nginx_configuration_serves_and_limits_as_the_doc_says(proxied, make_topic):
    https, http = proxied
    # Plain HTTP: the health check answers, everything else is sent to HTTPS.
    assert get(f"{http}/healthz").status_code == 200
    moved = get(f"{http}/api/topics/")
    assert moved.status_code == 301 and moved.headers["Location"] == f"https://{HOST}/api/topics/"

    # HTTPS: the server sees X-Forwarded-Proto, so no redirect, and HSTS.
    listing = get(f"{https}/api/topics/")
    assert listing.status_code == 200, listing.text
    assert listing.headers["Strict-Transport-Security"].startswith("max-age=31536000")

    # A body over the API's 1 MiB is refused by nginx, in the API's shape.
    big = httpx.post(
        f"{https}/api/topics/{'0' * 32}/arguments/",
        content=b"x" * (2 * 1024 * 1024),
        headers={"Host": HOST, "Content-Type": "application/json"},
        verify=False,
        timeout=10,
    )
    assert big.status_code == 413
    assert big.json()["code"] == "payload_too_large"

    # The live stream passes unbuffered: the first event arrives while the stream stays open.
    topic = make_topic()
    with transaction.atomic():
        transitions.topic_open_signup(transitions.topic_lock(topic.pk), now=timezone.now())
    started = time.monotonic()
    with httpx.stream(
        "GET", f"{https}/api/topics/{topic.pk}/events/", headers={"Host": HOST}, verify=False, timeout=10
    ) as stream:
        assert stream.status_code == 200
        lines = stream.iter_lines()
        assert next(line for line in lines if line.startswith("id:")) == "id: 1"
    assert time.monotonic() - started < 5

    # The admin login is rate-limited per address before the server sees it (10/minute, burst 5).
    statuses = [get(f"{https}/admin/login/").status_code for _ in range(10)]
    assert statuses[0] == 200
    assert 429 in statuses, statuses
    throttled = get(f"{https}/admin/login/")
    assert throttled.status_code == 429
    assert throttled.json()["code"] == "throttled"
    assert throttled.headers["Retry-After"] == "1"
