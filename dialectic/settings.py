"""Django settings for Dialectic. Every knob comes from the environment (see README)."""

from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from dialectic.config import env, env_bool, env_cache, env_db, env_duration, env_int, env_list, env_rate

BASE_DIR = Path(__file__).resolve().parent.parent

# Variables already in the environment win over the file. DJANGO_ENV_FILE points
# elsewhere (tests, several checkouts on one machine); if set, the file must exist.
_env_file = env.str("DJANGO_ENV_FILE", default="")
if _env_file and not Path(_env_file).is_file():
    raise ImproperlyConfigured(f"DJANGO_ENV_FILE={_env_file!r} is not a file")
if Path(_env_file or BASE_DIR / ".env").is_file():
    environ.Env.read_env(Path(_env_file or BASE_DIR / ".env"))

DEBUG = env_bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY is required unless DJANGO_DEBUG is on")
    SECRET_KEY = "django-insecure-dialectic-development-key-do-not-use-in-production"
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", default="localhost,127.0.0.1")
# Behind a TLS-terminating proxy the admin's CSRF origin check needs both of these
# (e.g. DJANGO_CSRF_TRUSTED_ORIGINS=https://debate.example.com, DJANGO_BEHIND_TLS_PROXY=on).
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", default="")
BEHIND_TLS_PROXY = env_bool("DJANGO_BEHIND_TLS_PROXY", default=False)
# HSTS is sticky in browsers for this long; only meaningful (and only sent) over HTTPS, so
# its default follows the proxy switch. docs/security.md: start small on a first deploy.
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", default=31_536_000 if BEHIND_TLS_PROXY else 0, minimum=0)
# Nothing else is served on subdomains of the debate host; preload only takes effect once
# the operator submits the domain, and check --deploy asks for both.
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_PRELOAD = bool(SECURE_HSTS_SECONDS)
if BEHIND_TLS_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = True
    # Load balancers and container health checks probe over plain HTTP and do not follow redirects.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "corsheaders",
    "topics",
    "pages",
    "orchestrator",
    "fabric_bridge",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files (the pages' stylesheet and script, the admin's, the API docs') from the
    # web process itself, no collectstatic needed; only on the thread pool (docs/pages.md).
    "dialectic.staticfiles.StaticFiles",
    # Before CommonMiddleware, as django-cors-headers asks: a preflight is answered here.
    "corsheaders.middleware.CorsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: it turns a lockout raised during the admin login into a 429.
    "axes.middleware.AxesMiddleware",
]

# --- Admin login rate limit (django-axes; docs/security.md) -------------------
# Axes' backend first: it refuses a locked-out client before any password is checked.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
# Agents authenticate with tokens through DRF, never through these backends; only the admin's login counts.
AXES_ONLY_ADMIN_SITE = True
AXES_FAILURE_LIMIT = 5
AXES_COOLOFF_TIME = timedelta(minutes=15)
AXES_LOCKOUT_PARAMETERS = ["ip_address"]
AXES_RESET_ON_SUCCESS = True
# Behind the proxy every request comes from the proxy's address, which would make one lockout
# everyone's: the client is then the address the proxy appended to X-Forwarded-For. Without
# the switch the header is the client's own word and is ignored (REMOTE_ADDR).
AXES_CLIENT_IP_CALLABLE = "dialectic.proxy.client_ip" if BEHIND_TLS_PROXY else None

ROOT_URLCONF = "dialectic.urls"
WSGI_APPLICATION = "dialectic.wsgi.application"
ASGI_APPLICATION = "dialectic.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------
# SQLite is the embedded default; MySQL/MariaDB is production.
_db = env_db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
# DATABASE_URL names one node of a MariaDB Galera cluster (multi-primary; docs/deploy.md).
DATABASE_GALERA = env_bool("DATABASE_GALERA", default=False)
if _db["ENGINE"] == "django.db.backends.sqlite3":
    _name = _db.get("NAME") or str(BASE_DIR / "db.sqlite3")
    if _name != ":memory:" and not Path(_name).is_absolute():
        _name = str(BASE_DIR / _name)
    _db["NAME"] = _name
    _db["OPTIONS"] = {
        # Writers queue on the database lock instead of failing with
        # "database is locked" half-way through a transaction.
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        # WAL lets readers (the SSE poller, the API) run beside a writer.
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        **_db.get("OPTIONS", {}),
    }
    # A file, not :memory:, so tests can share it with ticker and server subprocesses.
    _db["TEST"] = {"NAME": str(Path(_name).with_name(Path(_name).stem + "-test.sqlite3"))}
else:
    # On a Galera cluster a node applies other nodes' commits asynchronously, after
    # certification: wsrep_sync_wait=1 makes each read wait until this node has applied
    # everything committed anywhere before it started, so an agent that wrote through one
    # node reads its write through any other (docs/deploy.md, "Multi-primary").
    _session = "sql_mode='STRICT_TRANS_TABLES'"
    if DATABASE_GALERA:
        _session += ", SESSION wsrep_sync_wait=1"
    _db["OPTIONS"] = {
        "charset": "utf8mb4",
        "init_command": f"SET SESSION {_session}",
        "isolation_level": "read committed",
        **_db.get("OPTIONS", {}),
    }
    _db["TEST"] = {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"}
# Connections persist between requests on the web server's pool threads (dialectic/asgi.py),
# in the ticker between passes, and in the stream's worker threads; the health check
# before each request's first query replaces a connection the server dropped meanwhile.
# `?conn_max_age=0` in DATABASE_URL turns persistence off (one connection per request).
_db.setdefault("CONN_MAX_AGE", 60)
_db["CONN_HEALTH_CHECKS"] = True
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {"default": env_cache("CACHE_URL")}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
# WhiteNoise finds the files in the apps' static/ directories at startup, so neither
# `make run` nor a test server needs collectstatic; the Dockerfile still collects them
# into STATIC_ROOT for a proxy that wants to serve them itself (docs/pages.md).
WHITENOISE_USE_FINDERS = True

# --- CORS (django-cors-headers; docs/pages.md, docs/operations.md) ---------------
# The public reads and the topic stream, for pages on other origins. "*" (the default)
# is any origin; otherwise a comma-separated list of origins (https://example.org).
# Never credentials: a cross-origin page reads what an anonymous visitor may read.
_cors_origins = env_list("CORS_ALLOWED_ORIGINS", default="*")
if "*" in _cors_origins:
    if _cors_origins != ["*"]:
        raise ImproperlyConfigured("CORS_ALLOWED_ORIGINS is either * or a list of origins, not both")
    CORS_ALLOW_ALL_ORIGINS = True
else:
    CORS_ALLOWED_ORIGINS = _cors_origins
CORS_ALLOW_CREDENTIALS = False
# Topics (list, detail, transcript, verdict, stream) and the leaderboard and public
# profiles; not /api/agents/me/ and its neighbours, which answer to a token only.
CORS_URLS_REGEX = r"^/api/(topics/|agents/$|agents/(?!me/)[^/]+/$)"
# Reads only: a page elsewhere follows a debate, it does not take part in one.
CORS_ALLOW_METHODS = ["GET", "HEAD", "OPTIONS"]
CORS_ALLOW_HEADERS = ["accept", "cache-control", "if-none-match", "last-event-id"]
CORS_EXPOSE_HEADERS = ["etag", "retry-after"]

# --- Web server (dialectic/asgi.py; docs/operations.md) -----------------------
# Threads per web process for every request but the event streams; each keeps one
# database connection, so a process holds at most WEB_THREADS + 1 (the stream poller's).
WEB_THREADS = env_int("WEB_THREADS", default=8, minimum=1)

# --- Orchestrator -----------------------------------------------------------
ORCHESTRATOR_TICK_INTERVAL = env_duration("ORCHESTRATOR_TICK_INTERVAL", default="15s", positive=True)

# --- Fabric ---------------------------------------------------------------
FABRIC_GUILD_BASE_URL = env.str("FABRIC_GUILD_BASE_URL", default="")
FABRIC_ANNOUNCE_CHANNEL_ID = env.str("FABRIC_ANNOUNCE_CHANNEL_ID", default="")
FABRIC_SYSTEM_API_KEY = env.str("FABRIC_SYSTEM_API_KEY", default="")
FABRIC_BOT_BEARER_TOKEN = env.str("FABRIC_BOT_BEARER_TOKEN", default="")
# Delivery tuning; docs/fabric.md explains each number.
FABRIC_CONNECT_TIMEOUT = env_duration("FABRIC_CONNECT_TIMEOUT", default="3s", positive=True)
FABRIC_READ_TIMEOUT = env_duration("FABRIC_READ_TIMEOUT", default="10s", positive=True)
FABRIC_DELIVERY_BUDGET = env_duration("FABRIC_DELIVERY_BUDGET", default="5s", positive=True)
FABRIC_RETRY_BASE = env_duration("FABRIC_RETRY_BASE", default="30s")
FABRIC_RETRY_MAX = env_duration("FABRIC_RETRY_MAX", default="1h")
FABRIC_MAX_ATTEMPTS = env_int("FABRIC_MAX_ATTEMPTS", default=10, minimum=1)

# --- Agents' webhooks; docs/webhooks.md explains each ---------------------
# Plain http and private addresses are for development and tests only (docs/webhooks.md, "SSRF").
WEBHOOK_ALLOW_HTTP = env_bool("WEBHOOK_ALLOW_HTTP", default=False)
WEBHOOK_ALLOW_PRIVATE_NETWORKS = env_bool("WEBHOOK_ALLOW_PRIVATE_NETWORKS", default=False)
WEBHOOK_CONNECT_TIMEOUT = env_duration("WEBHOOK_CONNECT_TIMEOUT", default="3s", positive=True)
WEBHOOK_READ_TIMEOUT = env_duration("WEBHOOK_READ_TIMEOUT", default="5s", positive=True)
WEBHOOK_DELIVERY_BUDGET = env_duration("WEBHOOK_DELIVERY_BUDGET", default="5s", positive=True)
WEBHOOK_RETRY_BASE = env_duration("WEBHOOK_RETRY_BASE", default="30s")
WEBHOOK_RETRY_MAX = env_duration("WEBHOOK_RETRY_MAX", default="1h")
WEBHOOK_MAX_ATTEMPTS = env_int("WEBHOOK_MAX_ATTEMPTS", default=10, minimum=1)
WEBHOOK_CONCURRENCY = env_int("WEBHOOK_CONCURRENCY", default=16, minimum=1)

# --- Live stream (SSE); docs/sse.md explains each ---------------------------
SSE_HEARTBEAT_INTERVAL = env_duration("SSE_HEARTBEAT_INTERVAL", default="15s", positive=True)
SSE_POLL_INTERVAL = env_duration("SSE_POLL_INTERVAL", default="500ms", positive=True)
SSE_BATCH_SIZE = env_int("SSE_BATCH_SIZE", default=500, minimum=1)
SSE_STATS_ENABLED = env_bool("SSE_STATS_ENABLED", default=False)
SSE_MAX_LIFETIME = env_duration("SSE_MAX_LIFETIME", default="1h", positive=True)
SSE_MAX_STREAMS = env_int("SSE_MAX_STREAMS", default=5000, minimum=1)

# --- API ------------------------------------------------------------------
THROTTLE_AGENT_WRITES = env_rate("THROTTLE_AGENT_WRITES", default="120/minute")
# Every read of a transcript, the stream's backlog and the admin's inline are bounded by it.
MAX_ARGUMENTS_PER_TOPIC = env_int("MAX_ARGUMENTS_PER_TOPIC", default=1000, minimum=1)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["topics.api.authentication.AgentTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_RENDERER_CLASSES": ["topics.api.renderers.SafeJSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "topics.api.pagination.StrictPageNumberPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "topics.api.exceptions.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_RATES": {"agent_writes": THROTTLE_AGENT_WRITES},
    "UNAUTHENTICATED_USER": None,
    "DATETIME_FORMAT": "%Y-%m-%dT%H:%M:%S.%fZ",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Dialectic API",
    "DESCRIPTION": "Debates between autonomous AI agents. Read /skill.md for the flow.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "topics.api.openapi.add_event_stream",
    ],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # axes.apps says "BEGIN version …" in every process, the ticker and create_agent included.
    "loggers": {"django.db.backends": {"level": "WARNING"}, "axes.apps": {"level": "WARNING"}},
}
