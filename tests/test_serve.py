"""chargen serve driven over loopback with a real HTTP client: JSON and streamed generation,
limits, the bounded queue, concurrent streams and a client that goes away mid-stream."""

import json
import re
import socket
import subprocess
import sys
import threading
import time

import pytest

pytest.importorskip("fastapi", reason="chargen[serve] is not installed")
httpx = pytest.importorskip("httpx", reason="httpx is not installed")

from conftest import make_text, tiny_settings  # noqa: E402
from live_server import LiveServer  # noqa: E402

from chargen import api  # noqa: E402
from chargen.cli import main  # noqa: E402
from chargen.serve import ServeLimits  # noqa: E402

WAIT = 60.0  # seconds: generous bound for a loaded machine; only reached on failure


@pytest.fixture(scope="module")
def model(trained_run):
    return api.load(str(trained_run), device="cpu")


@pytest.fixture(scope="module")
def server(model):
    with LiveServer(model, ServeLimits(max_length=10**7, max_num=4, max_prompt=100,
                                       precision="fp32")) as live:
        yield live


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=WAIT) as http:
        yield http


def _events(response) -> list[tuple[str, dict]]:
    """Parse a server-sent event stream as it arrives."""
    event = None
    for line in response.iter_lines():
        if line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("data: "):
            yield event, json.loads(line.removeprefix("data: "))


def _streamed(client, **body) -> tuple[list[str], dict]:
    texts = [""] * body.get("num", 1)
    with client.stream("POST", "/generate", json={**body, "stream": True}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for event, data in _events(response):
            if event == "text":
                texts[data["sample"]] += data["text"]
            elif event == "done":
                return texts, data
    raise AssertionError("the stream ended without a done event")


def _wait_idle(client) -> dict:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        health = client.get("/health").json()
        if health["active"] == 0 and health["queued"] == 0:
            return health
        threading.Event().wait(0.02)  # poll interval while the worker drops the rows
    raise AssertionError(f"generations still running: {health}")


def test_health_and_info(client, model):
    assert client.get("/health").json() == {"status": "ok", "active": 0, "queued": 0}
    info = client.get("/info").json()
    assert info["vocabulary"] == model.tokenizer.vocab_size
    assert info["model"]["hidden_size"] == model.config.model.hidden_size
    assert info["best_val"] > 0 and info["limits"]["max_num"] == 4


def test_json_generation_is_seeded_and_matches_the_api(client, model):
    body = {"prime": "The ", "length": 50, "temperature": 0.8, "top_k": 10, "seed": 7, "num": 2}
    first = client.post("/generate", json=body).json()
    assert first == client.post("/generate", json=body).json() | {"timing": first["timing"]}
    assert first["texts"] == model.sample("The ", length=50, temperature=0.8, top_k=10, seed=7,
                                          num=2, precision="fp32")
    assert [len(text) for text in first["texts"]] == [50, 50]
    assert first["timing"]["tokens"] == 50


def test_repetition_penalty_is_served_like_the_api_and_beam_is_refused_clearly(client, model):
    body = {"prime": "The ", "length": 60, "temperature": 0.9, "seed": 4, "num": 2,
            "repetition_penalty": 1.4}
    assert client.post("/generate", json=body).json()["texts"] == model.sample(
        "The ", length=60, temperature=0.9, seed=4, num=2, repetition_penalty=1.4,
        precision="fp32")
    refused = client.post("/generate", json={"prime": "The ", "beam": 4})
    assert refused.status_code == 422 and "chargen sample --beam" in refused.json()["error"]


def test_stream_gives_the_same_text_piece_by_piece(client):
    body = {"prime": "The ", "length": 60, "temperature": 0.9, "seed": 3}
    texts, done = _streamed(client, **body)
    assert texts == client.post("/generate", json=body).json()["texts"]
    assert done["tokens"] == 60 and done["characters"] == 60
    assert done["characters_per_second"] > 0


def test_length_zero_answers_at_once(client):
    result = client.post("/generate", json={"prime": "The ", "length": 0, "num": 2}).json()
    assert result["texts"] == ["", ""] and result["timing"]["tokens"] == 0


def test_stop_sequence_cuts_the_text(client):
    result = client.post("/generate", json={"prime": "The ", "length": 400, "seed": 1,
                                            "stop": ["e"]}).json()
    assert "e" not in result["texts"][0] and result["timing"]["tokens"] < 400


@pytest.mark.parametrize("body,status,words", [
    ({"length": 10**8}, 400, "length"),
    ({"num": 5}, 400, "num 5"),
    ({"prime": "x" * 101}, 413, "prompt"),
    ({"prime": "日本"}, 400, "never saw"),
    ({"top_p": 0}, 422, "top_p"),
    ({"length": "long"}, 422, "length"),
    ({"temperature": -1}, 422, "temperature"),
    ({"colour": "red"}, 422, "colour"),
])
def test_limits_and_bad_requests_are_clear_4xx(client, body, status, words):
    response = client.post("/generate", json=body)
    assert response.status_code == status
    message = response.json()["error"]
    assert words in message and "\n" not in message


def test_any_content_type_carries_json_and_a_non_json_body_is_a_400(client):
    curl_style = client.post("/generate", content=b'{"prime": "The ", "length": 5}',
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert curl_style.status_code == 200 and len(curl_style.json()["texts"][0]) == 5
    broken = client.post("/generate", content=b"prime=The")
    assert broken.status_code == 400 and "not JSON" in broken.json()["error"]
    listed = client.post("/generate", json=[1, 2])
    assert listed.status_code == 422 and "\n" not in listed.json()["error"]


def test_unknown_characters_follow_the_unknown_policy(client):
    response = client.post("/generate", json={"prime": "The 日", "unknown": "skip", "length": 5})
    assert response.status_code == 200 and len(response.json()["texts"][0]) == 5


def test_concurrent_streams_each_get_their_own_seeded_text(client):
    bodies = [{"prime": "The ", "length": 80, "temperature": 0.7 + 0.1 * i, "seed": i,
               "top_p": 0.9 if i % 2 else 1.0} for i in range(8)]
    alone = [client.post("/generate", json=body).json()["texts"] for body in bodies]
    together = [None] * len(bodies)

    def stream(i):
        together[i] = _streamed(client, **bodies[i])[0]

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert together == alone


@pytest.mark.parametrize("poison", ['"temperature": 1e39', '"temperature": Infinity',
                                    '"temperature": 1e-45', '"seed": 100000000000000000000000'])
def test_a_poisoned_request_between_eight_streams_harms_none(client, poison):
    """The poisoned request is refused before it joins a batch; the streams around it give
    their solo text."""
    bodies = [{"prime": "The ", "length": 60, "temperature": 0.7 + 0.05 * i, "seed": i}
              for i in range(8)]
    alone = [client.post("/generate", json=body).json()["texts"] for body in bodies]
    together, refused = [None] * len(bodies), []

    def stream(i):
        together[i] = _streamed(client, **bodies[i])[0]

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(len(bodies))]
    for thread in threads[:4]:
        thread.start()
    refused.append(client.post("/generate", content='{"prime": "The ", "length": 60, "stream": '
                                                    f'true, {poison}}}'))
    for thread in threads[4:]:
        thread.start()
    for thread in threads:
        thread.join()
    assert together == alone
    assert refused[0].status_code == 422
    message = refused[0].json()["error"]
    assert poison.split('"')[1] in message and "--" not in message and "\n" not in message


def test_a_client_that_disconnects_stops_its_generation(client):
    with client.stream("POST", "/generate", json={"prime": "The ", "length": 10**7,
                                                  "stream": True}) as response:
        events = _events(response)
        assert [next(events)[0] for _ in range(4)] == ["start", "text", "text", "text"]
        assert client.get("/health").json()["active"] == 1
    assert _wait_idle(client)["status"] == "ok"  # 10**7 tokens would take hours
    assert client.post("/generate", json={"prime": "The ", "length": 5}).status_code == 200


def test_a_full_queue_answers_503(model):
    with LiveServer(model, ServeLimits(max_length=10**7, max_active=1, queue_size=0)) as live, \
            httpx.Client(base_url=live.url, timeout=WAIT) as http:
        with http.stream("POST", "/generate", json={"length": 10**7, "stream": True}) as held:
            events = _events(held)  # kept referenced: a dropped iterator closes the stream
            assert next(events)[0] == "start"
            refused = http.post("/generate", json={"length": 5})
            assert refused.status_code == 503 and "busy" in refused.json()["error"]
            assert refused.headers["retry-after"] == "1"
        _wait_idle(http)
        assert http.post("/generate", json={"length": 5}).status_code == 200


def test_playground_page_is_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "Generate" in page.text and "top_p" in page.text


def test_cli_serve_without_fastapi_says_what_to_install(monkeypatch, capsys, trained_run):
    monkeypatch.setitem(sys.modules, "fastapi", None)  # import fastapi now raises ImportError
    monkeypatch.delitem(sys.modules, "chargen.serve", raising=False)
    assert main(["serve", str(trained_run)]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("chargen: error:") and "pip install 'chargen[serve]'" in error
    assert "\n" not in error


def test_cli_serve_refuses_bad_limits_and_a_taken_port(capsys, trained_run):
    assert main(["serve", str(trained_run), "--max-active", "0"]) == 2
    assert "--max-active must be at least 1" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = str(taken.getsockname()[1])
        assert main(["serve", str(trained_run), "--port", port]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"chargen: error: cannot listen on 127.0.0.1:{port}")
    assert "--port" in error and "\n" not in error


def test_cli_serve_end_to_end_on_port_zero(trained_run):
    """`chargen serve --port 0` picks a free port and logs it; the server answers there."""
    server = subprocess.Popen([sys.executable, "-m", "chargen", "serve", str(trained_run),
                               "--port", "0"], stderr=subprocess.PIPE, text=True)
    try:
        line = server.stderr.readline()  # logged once the socket is listening
        url = re.search(r"http://127\.0\.0\.1:\d+", line).group(0)
        assert httpx.get(url + "/health", timeout=WAIT).json()["status"] == "ok"
        result = httpx.post(url + "/generate", json={"prime": "The ", "length": 8}, timeout=WAIT)
        assert len(result.json()["texts"][0]) == 8
    finally:
        server.terminate()
        server.wait(timeout=WAIT)


def test_a_document_run_serves_whole_units_like_the_api(line_run):
    model = api.load(str(line_run), device="cpu")
    with LiveServer(model, ServeLimits(precision="fp32")) as live, \
            httpx.Client(base_url=live.url, timeout=WAIT) as http:
        assert http.get("/info").json()["document_unit"] == "line"
        greedy = http.post("/generate", json={"prime": "g", "temperature": 0, "length": 200}).json()
        assert greedy["texts"] == model.sample("g", greedy=True, length=200, precision="fp32")
        body = {"temperature": 0.5, "num": 4, "seed": 3, "length": 200}
        units = http.post("/generate", json=body).json()
        streamed, done = _streamed(http, **body)
    assert units["texts"] == model.sample(**body, precision="fp32") == streamed
    assert all(text and "\n" not in text for text in units["texts"])
    assert done["tokens"] < 200  # every sample reached [end] before the length


def test_a_window_run_is_served_by_sliding_windows_like_the_api(tmp_path):
    corpus = tmp_path / "text.txt"
    corpus.write_text(make_text(3000, seed=4))
    run = api.train(str(corpus), str(tmp_path / "window"), quiet=True,
                    **tiny_settings(batching="window", window=6, input_encoding="scalar",
                                    max_steps=10)).run_dir
    model = api.load(str(run), device="cpu")
    body = {"prime": "The quick", "temperature": 0.8, "num": 3, "seed": 5, "length": 40}
    with LiveServer(model, ServeLimits(precision="fp32")) as live, \
            httpx.Client(base_url=live.url, timeout=WAIT) as http:
        texts = http.post("/generate", json=body).json()["texts"]
        greedy = http.post("/generate", json={**body, "temperature": 0, "num": 1}).json()["texts"]
    assert texts == model.sample(**body, precision="fp32")
    assert greedy == model.sample("The quick", greedy=True, length=40, precision="fp32")
