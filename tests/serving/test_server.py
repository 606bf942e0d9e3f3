"""``qwen3 serve`` as a user meets it: a real server process, the official ``openai`` client.

The model has random weights (its text is gibberish), so the tests check what the server
promises regardless of the text: greedy output equal to offline ``generate``, streams equal to
whole responses, stop strings, logprobs, the template's options, limits and errors in OpenAI's
shape, the api key, and cancellation on disconnect.
"""

from __future__ import annotations

import concurrent.futures
import json
import time

import httpx
import pytest

from .conftest import API_KEY, MODEL, TOKENIZER, start_server, stop_server

openai = pytest.importorskip("openai", reason="the server tests use the official client")

HELLO = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def offline():
    """The server's model loaded in this process: what ``generate`` gives offline."""
    import qwen3core
    from qwen3core.spec import PRESETS

    saved = PRESETS.get("tiny-vocab")
    PRESETS["tiny-vocab"] = PRESETS["tiny"].replace(
        vocab_size=151936, tie_word_embeddings=True, max_position_embeddings=4096)
    try:
        yield qwen3core.load(MODEL, tokenizer=TOKENIZER)
    finally:
        if saved is None:
            PRESETS.pop("tiny-vocab")


def metric(base: str, name: str) -> float:
    for line in httpx.get(f"{base}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_a_quantized_server_answers_like_the_model_quantized_offline(offline):
    import qwen3core  # (``offline`` registers the served preset in this process too)

    proc, base = start_server("--quantize", "int8", api_key=None)
    try:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="none", max_retries=0)
        got = client.completions.create(model=MODEL, prompt="The capital of France is",
                                        max_tokens=8, temperature=0)
    finally:
        stop_server(proc)
    assert "quantized int8" in proc.stdout.read()
    quantized = qwen3core.load(MODEL, tokenizer=TOKENIZER, quantize="int8")
    want = quantized.generate("The capital of France is", max_new_tokens=8, temperature=0)
    assert got.choices[0].text == want.text


def test_models_lists_the_served_model(client):
    assert [m.id for m in client.models.list().data] == [MODEL]


def test_greedy_completion_equals_offline_generate(client, offline):
    got = client.completions.create(model=MODEL, prompt="The capital of France is",
                                    max_tokens=12, temperature=0)
    want = offline.generate("The capital of France is", max_new_tokens=12)
    assert got.choices[0].text == want.text
    assert got.choices[0].finish_reason == "length"
    assert got.usage.prompt_tokens == want.prompt_tokens
    assert got.usage.completion_tokens == 12


def test_penalties_and_min_p_go_through_the_shared_sampler(client, offline):
    options = {"repetition_penalty": 1.3, "presence_penalty": 0.5, "frequency_penalty": 0.7}
    got = client.completions.create(model=MODEL, prompt="the the the", max_tokens=12,
                                    temperature=0, presence_penalty=0.5,
                                    frequency_penalty=0.7,
                                    extra_body={"repetition_penalty": 1.3})
    want = offline.generate("the the the", max_new_tokens=12, temperature=0, **options)
    plain = offline.generate("the the the", max_new_tokens=12, temperature=0)
    assert got.choices[0].text == want.text != plain.text
    sampled = client.completions.create(model=MODEL, prompt="x y", max_tokens=10,
                                        temperature=0.9, seed=11,
                                        extra_body={"min_p": 0.05, "top_k": 40})
    alone = offline.generate("x y", max_new_tokens=10, temperature=0.9, seed=11, min_p=0.05,
                             top_k=40)
    assert sampled.choices[0].text == alone.text


def test_concurrent_greedy_requests_each_equal_their_offline_run(client, offline):
    prompts = ["one", "two three four five six seven", "eight nine", "ten " * 30, "x"]
    budgets = [9, 4, 14, 6, 11]

    def ask(i):
        return client.completions.create(model=MODEL, prompt=prompts[i], max_tokens=budgets[i],
                                         temperature=0).choices[0].text

    with concurrent.futures.ThreadPoolExecutor(len(prompts)) as pool:
        got = list(pool.map(ask, range(len(prompts))))
    for prompt, budget, text in zip(prompts, budgets, got):
        assert text == offline.generate(prompt, max_new_tokens=budget).text


def test_chat_stream_equals_the_whole_response_and_reports_usage(client):
    whole = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=10,
                                           temperature=0)
    chunks = list(client.chat.completions.create(
        model=MODEL, messages=HELLO, max_tokens=10, temperature=0, stream=True,
        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 10
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens


def test_thinking_off_renders_the_empty_think_block(client):
    on = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=1)
    off = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=1,
                                         extra_body={"chat_template_kwargs":
                                                     {"enable_thinking": False}})
    # Qwen3's template writes "<think>\n\n</think>\n\n" after the generation prompt.
    assert off.usage.prompt_tokens == on.usage.prompt_tokens + 4


def test_tools_are_rendered_through_the_template(client):
    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    plain = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=1)
    with_tools = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=1,
                                                tools=tools)
    assert with_tools.usage.prompt_tokens > plain.usage.prompt_tokens + 20


def test_a_stop_string_cuts_the_text_and_says_stop(client):
    full = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=16,
                                     temperature=0).choices[0].text
    # Three characters from the middle on that are not all whitespace.
    start = next(i for i in range(len(full) // 2, len(full) - 2) if full[i:i + 3].strip())
    stop = full[start:start + 3]
    cut = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=16,
                                    temperature=0, stop=[stop]).choices[0]
    assert cut.finish_reason == "stop"
    assert cut.text == full[:full.index(stop)]


def test_logprobs_are_the_model_distribution(client):
    got = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=5,
                                         temperature=0, logprobs=True, top_logprobs=3)
    entries = got.choices[0].logprobs.content
    assert len(entries) == 5
    for entry in entries:
        tops = [t.logprob for t in entry.top_logprobs]
        assert len(tops) == 3 and tops == sorted(tops, reverse=True) and tops[0] <= 0
        assert entry.logprob == pytest.approx(tops[0])  # greedy picks the most likely
    text = "".join(e.token for e in entries)
    assert text == got.choices[0].message.content


def test_n_choices_with_a_seed_are_reproducible(client):
    def ask():
        out = client.completions.create(model=MODEL, prompt="Pick a word:", max_tokens=8, n=2,
                                        temperature=1.0, seed=7, extra_body={"top_k": 50})
        return [c.text for c in sorted(out.choices, key=lambda c: c.index)]

    first = ask()
    assert len(first) == 2 and first[0] != first[1]  # seeds 7 and 8
    assert ask() == first


def test_errors_come_in_openai_shape_and_the_server_keeps_serving(server, client):
    with pytest.raises(openai.NotFoundError) as unknown:
        client.completions.create(model="gpt-4", prompt="hi", max_tokens=2)
    assert unknown.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        client.completions.create(model=MODEL, prompt="hi", max_tokens=2, temperature=-1)
    assert bad.value.body["param"] == "temperature"
    with pytest.raises(openai.BadRequestError) as long:
        client.completions.create(model=MODEL, prompt="word " * 5000, max_tokens=2)
    assert long.value.body["code"] == "context_length_exceeded"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=[], max_tokens=2)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    raw = httpx.post(f"{server}/v1/completions", content=b"{not json", headers=headers)
    assert raw.status_code == 400 and "error" in raw.json()
    huge = httpx.post(f"{server}/v1/completions", headers=headers,
                      content=json.dumps({"prompt": "x" * (2 << 20)}).encode())
    assert huge.status_code == 413 and huge.json()["error"]["code"] == "request_too_large"
    missing = httpx.get(f"{server}/v1/nothing", headers=headers)
    assert missing.status_code == 404 and "message" in missing.json()["error"]
    ok = client.completions.create(model=MODEL, prompt="still there?", max_tokens=2)
    assert ok.choices[0].finish_reason == "length"


def test_the_api_key_is_required(server):
    anonymous = openai.OpenAI(base_url=f"{server}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        anonymous.models.list()
    assert httpx.get(f"{server}/v1/models").status_code == 401
    assert httpx.get(f"{server}/health").status_code == 200


def test_metrics_count_requests_and_tokens(server, client):
    before = metric(server, "qwen3core_generation_tokens_total")
    client.completions.create(model=MODEL, prompt="count me", max_tokens=3, temperature=0)
    assert metric(server, "qwen3core_generation_tokens_total") == before + 3
    text = httpx.get(f"{server}/metrics").text
    assert 'qwen3core_requests_total{endpoint="/v1/completions",status="200"}' in text
    assert "qwen3core_time_to_first_token_seconds_bucket" in text


def test_a_disconnected_stream_leaves_the_batch(server, client):
    stream = client.completions.create(model=MODEL, prompt="go on", max_tokens=400,
                                       temperature=0, stream=True)
    for _ in zip(range(3), stream):
        pass
    stream.close()
    deadline = time.monotonic() + 10
    while metric(server, "qwen3core_batch_size") != 0:
        assert time.monotonic() < deadline, "the cancelled row kept running"
        time.sleep(0.05)
    steps = metric(server, "qwen3core_steps_total")
    time.sleep(0.5)
    assert metric(server, "qwen3core_steps_total") == steps  # idle: nothing left to run


def test_a_client_that_gives_up_on_a_whole_response_cancels_it(server):
    steps = metric(server, "qwen3core_steps_total")
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server}/v1/completions", timeout=httpx.Timeout(60, read=0.5),
                   headers={"Authorization": f"Bearer {API_KEY}"},
                   json={"model": MODEL, "prompt": "go", "max_tokens": 4000, "temperature": 0})
    deadline = time.monotonic() + 10
    while metric(server, "qwen3core_batch_size") != 0:
        assert time.monotonic() < deadline, "the abandoned request kept running"
        time.sleep(0.05)
    assert metric(server, "qwen3core_steps_total") - steps < 4000  # stopped well short


def test_a_full_queue_answers_429():
    proc, base = start_server("--max-batch", "1", "--max-waiting", "1", api_key=None)
    try:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="none", max_retries=0)
        running = client.completions.create(model=MODEL, prompt="a", max_tokens=4000, stream=True)
        next(iter(running))
        waiting = client.completions.create(model=MODEL, prompt="b", max_tokens=4000, stream=True)
        with pytest.raises(openai.RateLimitError) as full:
            client.completions.create(model=MODEL, prompt="c", max_tokens=2)
        assert full.value.body["code"] == "queue_full"
        running.close()
        waiting.close()
        deadline = time.monotonic() + 10  # both leave within a step of their disconnect
        while metric(base, "qwen3core_batch_size") or metric(base, "qwen3core_queue_depth"):
            assert time.monotonic() < deadline, "closed streams kept their places"
            time.sleep(0.05)
        assert client.completions.create(model=MODEL, prompt="d", max_tokens=2).choices
    finally:
        stop_server(proc)
