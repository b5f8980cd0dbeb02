"""Settings for the test suite: production settings plus a throw-away secret key.

Never the project's ``.env`` (``make install`` writes one with
``DJANGO_DEBUG=1`` for local development): what the suite tests must not
depend on a developer's file, so it reads ``devtools/isolated.env``, which
sets nothing. Subprocesses the tests start (tickers, ASGI servers) get
DJANGO_SETTINGS_MODULE=tests.settings from ``devtools.environments.child_env``
and so use these too.
"""

import os

from devtools.environments import ISOLATED_ENV_FILE

os.environ["DJANGO_ENV_FILE"] = str(ISOLATED_ENV_FILE)
os.environ.setdefault("DJANGO_SECRET_KEY", "insecure-key-for-tests-only")

from dialectic.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
