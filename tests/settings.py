"""Settings for the test suite: production settings plus a throw-away secret key.

Subprocesses the tests start (tickers, ASGI servers) inherit
DJANGO_SETTINGS_MODULE and so use these too.
"""

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "insecure-key-for-tests-only")

from dialectic.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
