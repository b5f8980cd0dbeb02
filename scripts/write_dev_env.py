#!/usr/bin/env python3
"""`make install`: write a `.env` for local development when there is none; never touch an existing one.

The file turns `DJANGO_DEBUG` on and holds a freshly generated
`DJANGO_SECRET_KEY`, so that on a fresh clone the README's commands
(`.venv/bin/python manage.py create_agent alice`, ...) run without setting
anything by hand. It is for this checkout only: git and the Docker build
ignore it (`.gitignore`, `.dockerignore`), and without `DJANGO_DEBUG` a
missing `DJANGO_SECRET_KEY` still stops every process at start-up.

Usage: python3 scripts/write_dev_env.py [PATH]   (PATH defaults to the project's .env)
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

HEADER = """\
# Local development settings, written by `make install` because this checkout had no .env.
# Debug is on and the secret key exists only on this machine: never use this file, or its key,
# in production (set the variables there; see the README's Configuration). make install never
# overwrites it: edit it, or delete it to get a new one.
"""


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent / ".env"
    # token_urlsafe: letters, digits, - and _, nothing a .env parser would read as a comment or a reference.
    text = f"{HEADER}DJANGO_SECRET_KEY={secrets.token_urlsafe(50)}\nDJANGO_DEBUG=1\n"
    try:
        # O_EXCL: an existing file is never overwritten, even by two installs racing; 0600: the key is private.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        print(f"{path} exists: left as it is")
        return 0
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)
    print(f"wrote {path}: settings for local development (debug on, a generated secret key), not for production")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
