"""Serving under load: aggregate and per-client characters/second for 1, 8 and 32 concurrent
streaming clients against `chargen serve` (a subprocess on a free loopback port), showing
what dynamic batching buys: 32 clients should get far more than 1/32 of one client's speed.

    python benchmarks/serve_load.py [--run RUN] [--length 1000] [--clients 1 8 32]

Without --run it makes a run with untrained weights of the benchmark's model size
(--hidden-size, --num-layers; 2x512 LSTM by default) after one training step: speed does
not depend on what the weights have learned.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from common import record, table

from chargen import api


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_run(directory: Path, hidden_size: int, num_layers: int) -> str:
    result = api.train("builtin:python-docs", str(directory / "run"), hidden_size=hidden_size,
                       num_layers=num_layers, max_steps=1, eval_every=1, eval_chars=1000,
                       quiet=True, auto=False)
    return str(result.run_dir)


def start_server(run: str, port: int, max_active: int, length: int,
                 threads: int | None) -> subprocess.Popen:
    command = [sys.executable, "-m", "chargen", "serve", run, "--port", str(port),
               "--max-active", str(max_active), "--max-length", str(length)]
    if threads is not None:
        command += ["--threads", str(threads)]
    server = subprocess.Popen(command)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode}")
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).raise_for_status()
            return server
        except httpx.TransportError:
            time.sleep(0.2)  # the server is still loading the model
    server.kill()
    raise SystemExit("the server did not come up in 120 s")


def stream_once(client: httpx.Client, body: dict) -> tuple[int, float]:
    """One streaming request -> (characters received, seconds from request to done). The
    stream is read as raw bytes and only its final event parsed, so that the clients, which
    share the machine with the server, spend as little CPU as they can."""
    tail, start = b"", time.perf_counter()
    with client.stream("POST", "/generate", json={**body, "stream": True}) as response:
        response.raise_for_status()
        for chunk in response.iter_raw():
            tail = (tail + chunk)[-4096:]
    seconds = time.perf_counter() - start
    done = tail.rsplit(b"event: done\ndata: ", 1)[1]
    return json.loads(done)["characters"], seconds


def load(client: httpx.Client, clients: int, length: int) -> dict[str, float]:
    results: list[tuple[int, float]] = [(0, 0.0)] * clients
    ready = threading.Barrier(clients + 1)

    def one_client(i: int) -> None:
        ready.wait()
        results[i] = stream_once(client, {"prime": "The ", "length": length, "temperature": 0.8,
                                       "seed": i})

    threads = [threading.Thread(target=one_client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    ready.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    total = sum(chars for chars, _ in results)
    return {"aggregate": total / wall,
            "per_client": sum(chars / seconds for chars, seconds in results) / clients}


def in_process(run: str, num: int, length: int, threads: int) -> float:
    """chars/s of the same generation in this process, `num` samples as one batch, with the
    server's model threads: what serving would reach with no HTTP at all."""
    import torch

    default = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model = api.load(run, device="cpu")
        model.sample("The ", num=num, length=50, temperature=0.8, seed=0)  # warm-up
        start = time.perf_counter()
        texts = model.sample("The ", num=num, length=length, temperature=0.8, seed=0)
        return sum(len(text) for text in texts) / (time.perf_counter() - start)
    finally:
        torch.set_num_threads(default)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", help="run directory to serve (default: untrained weights)")
    parser.add_argument("--hidden-size", type=int, default=512)
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--length", type=int, default=1000, help="characters per client")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--threads", type=int, help="the server's torch threads")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        run = args.run or make_run(Path(scratch), args.hidden_size, args.num_layers)
        port = free_port()
        server = start_server(run, port, max(args.clients), args.length, args.threads)
        try:
            pool = httpx.Limits(max_connections=max(args.clients))
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", limits=pool,
                              timeout=600) as client:
                stream_once(client, {"prime": "The ", "length": 50})  # warm-up
                figures = {n: load(client, n, args.length) for n in args.clients}
        finally:
            server.terminate()
            server.wait()
        model_threads = args.threads or max(1, torch_threads() - 1)
        batch = max(args.clients)
        alone = in_process(run, batch, args.length, model_threads)
    single = figures[args.clients[0]]["aggregate"]
    rows = [[n, f"{f['aggregate']:,.0f}", f"{f['per_client']:,.0f}",
             f"{f['aggregate'] / single:.1f}x"] for n, f in figures.items()]
    info = api.run_info(run) if args.run else None
    model = (f"{info['config']['model']['cell'].upper()} {info['config']['model']['num_layers']}x"
             f"{info['config']['model']['hidden_size']}" if info else
             f"LSTM {args.num_layers}x{args.hidden_size} (untrained)")
    record("Serving under load (characters per second)", table(
        ["concurrent clients", "aggregate chars/s", "per-client chars/s",
         f"aggregate / {args.clients[0]} client"], rows) +
        f"\n\n{model}, server torch threads: {args.threads or 'the serve default'}; each client "
        f"streams {args.length} characters at temperature 0.8 "
        "(server-sent events over loopback, clients as threads in the benchmark process).\n\n"
        f"In process, the same model generating {batch} samples as one batch with "
        f"{model_threads} thread(s) (the server's model threads): {alone:,.0f} chars/s; "
        f"{batch} streaming clients reach {figures[batch]['aggregate'] / alone:.0%} of it.")


if __name__ == "__main__":
    main()
