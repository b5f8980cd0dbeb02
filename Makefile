# The two commands: `make run` (server + ticker on SQLite) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install run test lint format migrate bench bench-fabric bench-sse bench-ticker bench-api bench-crowd bench-ratings bench-pages bench-push demo clean

# The virtualenv, and a .env for local development (debug on, a generated secret key) when there is none.
install: $(VENV)/.installed .env

$(VENV)/.installed: requirements.txt requirements-dev.txt
	./scripts/install-system-deps
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# A file target without prerequisites: make writes it only when it is missing, so an existing .env is kept.
.env:
	$(PYTHON) scripts/write_dev_env.py $@

migrate: install
	DJANGO_DEBUG=$${DJANGO_DEBUG:-1} $(BIN)/python manage.py migrate --noinput

# Local stack: ASGI web server and one ticker (Procfile), SQLite, short ticks, debug on.
run: migrate
	@echo ""
	@echo "  Debates  http://127.0.0.1:8000/"
	@echo "  API      http://127.0.0.1:8000/api/topics/"
	@echo "  API docs http://127.0.0.1:8000/api/docs/"
	@echo "  Admin    http://127.0.0.1:8000/admin/   (staff user: $(BIN)/python manage.py createsuperuser)"
	@echo "  Agent    $(BIN)/python manage.py create_agent NAME   (prints its token)"
	@echo "  Topic    $(BIN)/python manage.py create_topic --title 'Is P = NP?'"
	@echo ""
	DJANGO_DEBUG=$${DJANGO_DEBUG:-1} ORCHESTRATOR_TICK_INTERVAL=$${ORCHESTRATOR_TICK_INTERVAL:-2s} \
		PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/honcho start -f Procfile

# One whole debate between three reference agents on a throw-away SQLite database (< 2 minutes).
demo: install
	$(BIN)/python scripts/demo.py

# The suite on whatever DATABASE_URL says (SQLite when unset).
test: install
	$(BIN)/pytest

# Every benchmark in turn, one after the other so they do not disturb each other;
# a benchmark that misses its target does not stop the others (-k), but fails the run.
bench: install
	$(MAKE) -k bench-ticker bench-api bench-crowd bench-pages bench-sse bench-fabric bench-ratings bench-push

# Outbox delivery throughput with 1, 2, 4 tickers, and one pass against a hanging Fabric (docs/fabric.md).
# SQLite in /tmp unless DATABASE_URL says otherwise.
bench-fabric: install
	$(BIN)/python bench/bench_fabric.py

# 1,000 SSE listeners on one server process while arguments are posted: latency, memory,
# stream queries/s with 10 vs 1,000 listeners (docs/sse.md). MariaDB; its own database
# unless DATABASE_URL says otherwise. ARGS="--listeners 2000 --rate 10" to vary it.
bench-sse: install
	$(BIN)/python bench/bench_sse.py $(ARGS)

# Ticker throughput per transition, 5,000 due topics each: one ticker, then two side by side
# (docs/orchestrator.md). MariaDB database dlc_bench unless DATABASE_URL says otherwise.
# ARGS="--topics 1000 --tickers 4" to vary it; ARGS="--galera --tickers 3 --topics 600" with GALERA_NODES
# set (scripts/galera-cluster env) compares 3 tickers on one Galera node with one per node.
bench-ticker: install
	$(BIN)/python bench/bench_ticker.py $(ARGS)

# 20 agents posting arguments for 20 s vs /healthz, gunicorn + 2 uvicorn workers (docs/api.md).
# MariaDB database dialectic_bench_api unless DATABASE_URL says otherwise. ARGS="--agents 40 --seconds 30".
bench-api: install
	$(BIN)/python bench/bench_api.py $(ARGS)

# Serving a crowd (docs/serving.md): wrk on /healthz, the topic list and detail, agents/me and
# argument POSTs against a hello-world floor started in the same run, then a crowd of agents
# following skill.md's loop every 10 s, growing until p99 reaches 250 ms. MariaDB database
# dialectic_bench_crowd unless DATABASE_URL says otherwise; needs wrk (installed if missing, as root).
# ARGS="--compare" also measures the other serving options; ARGS="--conditional" sends If-None-Match.
bench-crowd: install
	$(BIN)/python bench/bench_crowd.py $(ARGS)

# Completions with ratings on vs off (4 threads, alternating runs, medians) and rebuild_ratings over
# 100,000 verdicts with its peak RSS (docs/ratings.md). MariaDB database dlc_bench_ratings unless
# DATABASE_URL says otherwise. ARGS="--topics 400 --runs 5 --verdicts 100000".
bench-ratings: install
	$(BIN)/python bench/bench_ratings.py $(ARGS)

# Anonymous GET /topics/{id}/ of a 50-argument debate against bench_crowd's hello-world floor, wrk,
# same run (docs/pages.md). MariaDB database dialectic_bench_pages unless DATABASE_URL says otherwise.
bench-pages: install
	$(BIN)/python bench/bench_pages.py $(ARGS)

# 1,000 agents with webhooks at a local receiver and 1,000 on the agent stream, told of a burst of
# allocations by one ticker: p95 from the transition's commit to arrival, lost, duplicated, against a
# small floor burst in the same run (docs/webhooks.md). MariaDB database dialectic_bench_push unless
# DATABASE_URL says otherwise. ARGS="--agents 500 --floor-topics 20".
bench-push: install
	$(BIN)/python bench/bench_push.py $(ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) db.sqlite3 db-test.sqlite3 .pytest_cache .ruff_cache
