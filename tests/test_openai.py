"""The OpenAI-style endpoints, driven by the real `openai` Python package against a live server
over loopback: completions JSON and streamed, models, the error shape, the API key."""

import httpx
import pytest
from live_server import LiveServer

openai = pytest.importorskip("openai", reason="the openai package (make install has it)")

from chargen import api  # noqa: E402
from chargen.serve import ServeLimits  # noqa: E402

KEY = "sk-test-key"


@pytest.fixture(scope="module")
def model(trained_run):
    return api.load(str(trained_run), device="cpu")


@pytest.fixture(scope="module")
def server(model):
    with LiveServer(model, ServeLimits(precision="fp32", max_num=8)) as live:
        yield live


def client(server, key="unused", **options):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, **options)


def test_a_completion_is_the_api_text(server, model, trained_run):
    done = client(server).completions.create(model="whatever", prompt="The ", max_tokens=30,
                                             temperature=0.8, top_p=0.95, seed=3)
    [expected] = model.sample("The ", length=30, temperature=0.8, top_p=0.95, seed=3,
                              precision="fp32")
    assert done.object == "text_completion" and done.model == trained_run.name
    assert [c.text for c in done.choices] == [expected]
    assert done.choices[0].finish_reason == "length"
    assert done.usage.prompt_tokens == 4 and done.usage.completion_tokens == 30


def test_n_and_a_list_of_prompts_are_rows_of_one_batch(server, model):
    done = client(server).completions.create(model="m", prompt=["The ", "and "], n=2,
                                             max_tokens=20, temperature=0)
    greedy = [model.sample(p, length=20, temperature=0, precision="fp32")[0]
              for p in ("The ", "and ")]
    assert [c.index for c in done.choices] == [0, 1, 2, 3]
    assert [c.text for c in done.choices] == [greedy[0], greedy[0], greedy[1], greedy[1]]


def test_streaming_gives_the_same_text_and_a_finish_reason(server, model):
    stream = client(server).completions.create(model="m", prompt="The ", max_tokens=40,
                                               temperature=0, stream=True,
                                               stream_options={"include_usage": True})
    text, reasons, usage = [], [], None
    for chunk in stream:
        for choice in chunk.choices:
            text.append(choice.text)
            if choice.finish_reason:
                reasons.append(choice.finish_reason)
        usage = chunk.usage or usage
    assert "".join(text) == model.sample("The ", length=40, temperature=0, precision="fp32")[0]
    assert reasons == ["length"] and usage.completion_tokens == 40


def test_a_stop_sequence_ends_a_completion_with_finish_reason_stop(server, model):
    [free] = model.sample("The ", length=60, temperature=0, precision="fp32")
    stop = free[10:12]  # two characters the greedy text reaches
    done = client(server).completions.create(model="m", prompt="The ", max_tokens=60,
                                             temperature=0, stop=stop)
    assert done.choices[0].text == free[: free.index(stop)]
    assert done.choices[0].finish_reason == "stop"


def test_models_lists_the_run(server, trained_run):
    listed = client(server).models.list()
    assert [m.id for m in listed.data] == [trained_run.name]
    assert client(server).models.retrieve(trained_run.name).owned_by == "chargen"


@pytest.mark.parametrize("request_settings, param", [
    ({"logprobs": 3}, "logprobs"),
    ({"max_tokens": 100_000}, "max_tokens"),
    ({"n": 50}, "n"),
    ({"extra_body": {"top_k": -1}}, None),
    ({"temperature": -1}, None),
])
def test_bad_requests_are_400_in_openai_s_error_shape(server, request_settings, param):
    with pytest.raises(openai.BadRequestError) as caught:
        client(server).completions.create(model="m", prompt="The ", **request_settings)
    error = caught.value.body
    assert error["type"] == "invalid_request_error" and error["message"]
    if param:
        assert error["param"] == param


def test_an_api_key_guards_every_endpoint_but_health(model):
    with LiveServer(model, ServeLimits(precision="fp32", api_key=KEY)) as live:
        with pytest.raises(openai.AuthenticationError) as caught:
            client(live, key="sk-wrong").completions.create(model="m", prompt="a", max_tokens=2)
        assert caught.value.status_code == 401 and caught.value.body["code"] == "invalid_api_key"
        done = client(live, key=KEY).completions.create(model="m", prompt="The ", max_tokens=3)
        assert len(done.choices[0].text) == 3
        assert httpx.get(live.url + "/health").status_code == 200
        assert httpx.get(live.url + "/info").status_code == 401
        assert httpx.post(live.url + "/generate", json={"prime": "a"}).status_code == 401
        info = httpx.get(live.url + "/info", headers={"Authorization": f"Bearer {KEY}"}).json()
        assert info["limits"]["api_key"] is True and KEY not in str(info)
