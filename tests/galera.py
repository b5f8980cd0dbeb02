"""The three-node Galera cluster the ``galera`` tests run against (CI's Galera step, scripts/galera-cluster).

``GALERA_NODES`` lists one ``mysql://`` URL per node, all for the same
database; the suite itself connects to the first (``DATABASE_URL``), so
pytest-django creates the test database there and Galera replicates it to
the others. A child process is pointed at node *i* by swapping host and
port in the test database's URL.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

from devtools.environments import child_database_url, child_env
from devtools.processes import BASE_DIR

CLUSTER_SCRIPT = BASE_DIR / "scripts" / "galera-cluster"


def nodes() -> list[str]:
    """The cluster's node URLs; empty when no cluster is configured."""
    return [url for url in os.environ.get("GALERA_NODES", "").split(",") if url.strip()]


def node_database_url(index: int) -> str:
    """The test database's URL on node ``index`` (0-based)."""
    node = urlsplit(nodes()[index])
    test_db = urlsplit(child_database_url())
    return urlunsplit(test_db._replace(netloc=node.netloc))


def node_env(index: int, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A child's environment on node ``index`` of the cluster, with Galera's read causality on."""
    return child_env({"DATABASE_URL": node_database_url(index), "DATABASE_GALERA": "1", **(extra or {})})


def spread_env(index: int, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Child ``index`` of several: on a cluster, on node ``index`` modulo its size; otherwise the test database."""
    if nodes():
        return node_env(index % len(nodes()), extra)
    return child_env(extra)


def cluster(*args: str, timeout: float = 120) -> str:
    """Run ``scripts/galera-cluster`` (``kill-node 3``, ``start-node 3``, ``status``); returns its output."""
    done = subprocess.run([str(CLUSTER_SCRIPT), *args], capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"galera-cluster {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout
