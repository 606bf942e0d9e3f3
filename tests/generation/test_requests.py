"""Request checking: every bad argument is refused with a message saying what to do, and every
accepted prompt shape is read as what it is."""

import pytest

from qwen3core.errors import GenerationError
from qwen3core.generation.prompts import encode_prompts


@pytest.mark.parametrize("kwargs, message", [
    ({"temperature": -1.0}, "temperature must be a finite number in [0, inf)"),
    ({"top_p": 0.0}, "top_p must be a finite number in (0, 1]"),
    ({"top_p": 1.01}, "top_p must be a finite number in (0, 1]"),
    ({"top_k": -2}, "top_k must be an integer >= 0"),
    ({"max_new_tokens": 0}, "max_new_tokens must be an integer >= 1"),
    ({"max_new_tokens": 2.0}, "max_new_tokens must be an integer >= 1"),
    ({"stop": ["x"]}, "has no tokenizer"),
    ({"stop": [""]}, "stop strings must be non-empty"),
])
def test_bad_parameters_are_refused_before_any_work(tiny64, kwargs, message):
    kwargs.setdefault("max_new_tokens", 4)
    with pytest.raises(GenerationError) as info:
        tiny64.generate([1, 2, 3], **kwargs)
    assert message in str(info.value)


@pytest.mark.parametrize("prompts, message", [
    ([], "non-empty list"),
    ([[1, 2], []], "prompt 1 is empty"),
    ([1, "a"], "cannot read prompts made of int, str"),
    ({"role": "user", "content": "hi"}, "pass [message]"),
    ([[1, 2], [3, True]], "cannot read prompts made of bool, int"),
    ([1, 2, 600], "outside the model's vocabulary 0..511"),
    ([[1], [-1]], "prompt 1 has token ids outside"),
])
def test_bad_prompts_are_refused(tiny64, prompts, message):
    with pytest.raises(GenerationError) as info:
        tiny64.generate(prompts, max_new_tokens=2)
    assert message in str(info.value)


def test_text_without_a_tokenizer_says_how_to_get_one(tiny64):
    for prompts in ("Hello", ["a", "b"], [{"role": "user", "content": "hi"}]):
        with pytest.raises(GenerationError) as info:
            tiny64.generate(prompts, max_new_tokens=2)
        assert "--tokenizer" in str(info.value) and "--prompt-ids" in str(info.value)


def test_prompt_plus_new_tokens_must_fit_the_context(tiny64):
    context = tiny64.spec.max_position_embeddings  # 2048
    prompt = [1] * 2000
    with pytest.raises(GenerationError) as info:
        tiny64.generate([[1, 2], prompt], max_new_tokens=49)
    message = str(info.value)
    assert "prompt 1 has 2000 tokens" in message and f"context of {context}" in message
    assert "at most 48" in message
    assert len(tiny64.generate(prompt, max_new_tokens=48).token_ids) == 48


def test_stream_checks_the_request_when_called_not_when_iterated(tiny64):
    with pytest.raises(GenerationError):
        tiny64.stream([1, 2], max_new_tokens=2, temperature=-1)


def test_prompt_shapes_without_tokenizer():
    assert encode_prompts([1, 2, 3], None).token_ids == [[1, 2, 3]]
    assert encode_prompts([1, 2, 3], None).single
    batch = encode_prompts([[1, 2], (3,)], None)
    assert batch.token_ids == [[1, 2], [3]] and not batch.single


def test_prompt_shapes_with_the_tokenizer(tokenizer):
    hello = tokenizer.encode("Hello, world!")
    assert hello == [9707, 11, 1879, 0]
    one = encode_prompts("Hello, world!", tokenizer)
    assert one.token_ids == [hello] and one.single
    two = encode_prompts(["Hello, world!", "Hi"], tokenizer)
    assert two.token_ids == [hello, tokenizer.encode("Hi")] and not two.single
    messages = [{"role": "user", "content": "Hello, world!"}]
    chat = encode_prompts(messages, tokenizer, enable_thinking=False)
    assert chat.single
    assert tokenizer.decode(chat.token_ids[0]) == (
        "<|im_start|>user\nHello, world!<|im_end|>\n<|im_start|>assistant\n"
        "<think>\n\n</think>\n\n")
    chats = encode_prompts([messages, messages], tokenizer)
    assert not chats.single
    assert tokenizer.decode(chats.token_ids[1]) == (
        "<|im_start|>user\nHello, world!<|im_end|>\n<|im_start|>assistant\n")
    with pytest.raises(GenerationError, match="empty string"):
        encode_prompts(["fine", ""], tokenizer)
