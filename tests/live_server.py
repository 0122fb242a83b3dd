"""A real chargen server on a free loopback port, run by uvicorn in a background thread.

The socket is bound and listening before the thread starts, so clients can connect at once:
the kernel queues them until uvicorn accepts (no waiting for the server to come up)."""

from __future__ import annotations

import socket
import threading

import uvicorn

from chargen.serve import ServeLimits, create_app


class LiveServer:
    def __init__(self, model, limits: ServeLimits | None = None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(create_app(model, limits), log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join()
        self.sock.close()
