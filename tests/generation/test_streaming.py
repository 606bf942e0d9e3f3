"""Streaming: events carry each row's new ids and text as they come, and add up to the
non-streamed results."""

from collections import defaultdict

import pytest


def collect(stream):
    ids, texts, finishes = defaultdict(list), defaultdict(str), {}
    for event in stream:
        assert event.row not in finishes, "no events for a row after its last one"
        ids[event.row] += event.token_ids
        texts[event.row] += event.text
        if event.finish_reason is not None:
            finishes[event.row] = event.finish_reason
    return ids, texts, finishes


@pytest.mark.parametrize("prompt", [
    "Hello, world!",
    [{"role": "user", "content": "Write a haiku about the sea."}],
    "数学は美しい。🙂",
])
def test_streamed_pieces_concatenate_to_the_text(chat_model, prompt):
    kwargs = {"max_new_tokens": 40, "temperature": 1.0, "seed": 4}
    stream = chat_model.stream(prompt, **kwargs)
    ids, texts, finishes = collect(stream)
    result = chat_model.generate(prompt, **kwargs)
    assert stream.result.token_ids == result.token_ids and stream.result.text == result.text
    assert ids[0] == result.token_ids
    assert texts[0] == result.text
    assert finishes == {0: result.finish_reason}
    # And the text is what the tokenizer decodes from the ids (no eos was generated here).
    assert result.finish_reason == "length"
    assert result.text == chat_model.tokenizer.decode(result.token_ids)


def test_streaming_a_batch_interleaves_rows_and_adds_up_per_row(chat_model):
    prompts = ["Hello", "A much longer prompt than the first one", "Third"]
    kwargs = {"max_new_tokens": 12, "temperature": 0.9, "seed": 1}
    stream = chat_model.stream(prompts, **kwargs)
    events = list(stream)
    assert [e.row for e in events[:3]] == [0, 1, 2]  # one event per live row per step
    ids, texts, finishes = collect(events)
    results = chat_model.generate(prompts, **kwargs)
    for row, result in enumerate(results):
        assert ids[row] == result.token_ids and texts[row] == result.text
        assert finishes[row] == result.finish_reason
    assert stream.results[1].token_ids == results[1].token_ids


def test_the_eos_token_ends_the_row_and_stays_out_of_the_text(chat_model):
    free = chat_model.generate("Hello", max_new_tokens=10)
    eos = free.token_ids[4]
    result = chat_model.generate("Hello", max_new_tokens=10, eos_token_ids=[eos])
    assert result.finish_reason == "stop"
    assert result.token_ids == free.token_ids[:free.token_ids.index(eos) + 1]
    assert result.text == chat_model.tokenizer.decode(result.token_ids[:-1])


def test_results_are_unavailable_until_the_stream_is_exhausted(tiny64):
    stream = tiny64.stream([1, 2, 3], max_new_tokens=3)
    first = next(stream)
    with pytest.raises(RuntimeError, match="has not finished"):
        _ = stream.results
    rest = list(stream)
    assert len(rest) == 2 and rest[-1].finish_reason == "length"
    assert first.finish_reason is None and rest[0].finish_reason is None
    assert stream.result.token_ids == first.token_ids + rest[0].token_ids + rest[1].token_ids
