"""The development toolkit: what the tests, the benchmarks and ``make demo`` share.

- ``processes``: child processes (the web server as the Procfile runs it, tickers,
  operator commands, reference agents) that are always stopped, and ``Stack``,
  which puts them together; no Django.
- ``environments``: the environment each kind of process gets (the test
  database for the suite's children, production settings for the benchmarks),
  never the developer's ``.env``.
- ``fabric_receiver``: a real HTTP server standing in for Fabric.
- ``sse_client``: a live-stream reader in a background thread.
- ``seeding`` and ``consistency``: many rows fast, and checking that every
  topic's rows tell one story (they need a configured Django).

Application code never imports this package; it imports only the application
(by its public modules), the standard library and the pinned requirements.
"""
