"""dialectic.asgi's application for granian, in bench_crowd's --compare only.

a2wsgi reads a request body with ``run_coroutine_threadsafe(receive())``,
which takes a coroutine; granian's ``receive()`` returns a native awaitable,
so without this wrapper every request with a body fails there.
"""

from dialectic.asgi import Receive, Send
from dialectic.asgi import application as dialectic_application


async def application(scope: dict, receive: Receive, send: Send) -> None:
    async def receive_coroutine() -> dict:
        return await receive()

    await dialectic_application(scope, receive_coroutine, send)
