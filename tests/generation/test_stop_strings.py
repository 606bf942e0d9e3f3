"""Stop strings: text is cut before the first stop string, even one that straddles pieces."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qwen3core.generation.stop_strings import StopStringMatcher

alphabet = st.text(alphabet="abc", min_size=0, max_size=12)


def stream_reference(pieces: list[str], stops: list[str]) -> tuple[str, str | None]:
    """What streaming must give: after each piece, if the text so far holds a stop string,
    cut before the earliest one and end."""
    text = ""
    for piece in pieces:
        text += piece
        hits = [(text.find(s), s) for s in stops if s in text]
        if hits:
            index = min(i for i, _ in hits)
            return text[:index], next(s for i, s in hits if i == index)
    return text, None


@settings(max_examples=400, deadline=None)
@given(pieces=st.lists(alphabet, max_size=8),
       stops=st.lists(st.text(alphabet="abc", min_size=1, max_size=4), min_size=1, max_size=3))
def test_matcher_releases_exactly_the_text_before_the_first_stop(pieces, stops):
    matcher = StopStringMatcher(tuple(stops))
    released, found = "", None
    for piece in pieces:
        out, found = matcher.feed(piece)
        released += out
        if found is not None:
            break
    else:
        released += matcher.flush()
    expected_text, expected_stop = stream_reference(pieces, stops)
    assert released == expected_text
    if expected_stop is None:
        assert found is None
    else:
        assert found is not None and expected_text + found == (
            "".join(pieces)[:len(expected_text) + len(found)])


def test_matcher_holds_back_only_possible_starts():
    matcher = StopStringMatcher(("STOP",))
    assert matcher.feed("hello ST") == ("hello ", None)
    assert matcher.feed("ar") == ("STar", None)
    assert matcher.feed(" then S") == (" then ", None)
    assert matcher.feed("TOP and more") == ("", "STOP")


def test_without_stop_strings_everything_passes_through():
    assert StopStringMatcher(()).feed("anything") == ("anything", None)


@pytest.fixture(scope="module")
def free_run(chat_model):
    """A greedy completion with no stop strings."""
    result = chat_model.generate("Once upon a time", max_new_tokens=24)
    assert result.finish_reason == "length"
    return result


@pytest.mark.parametrize("start, length", [(3, 4), (10, 7), (0, 2)])
def test_generation_stops_at_a_stop_string_and_trims_it(chat_model, free_run, start, length):
    text = free_run.text
    stop = text[start:start + length]  # often straddles two tokens' text
    result = chat_model.generate("Once upon a time", max_new_tokens=24, stop=["\x00never", stop])
    assert result.finish_reason == "stop" and result.stop_string == stop
    assert result.text == text[:text.find(stop)]
    # Generation ended at the token that completed the stop string: ids are a prefix.
    assert result.token_ids == free_run.token_ids[:len(result.token_ids)]
    tokenizer = chat_model.tokenizer
    assert stop in tokenizer.decode(result.token_ids)
    assert stop not in tokenizer.decode(result.token_ids[:-1])


def test_each_row_of_a_batch_has_its_own_stop(chat_model):
    prompts = ["Once upon a time", "The quick brown fox"]
    free = chat_model.generate(prompts, max_new_tokens=16)
    stop = free[0].text[5:9]
    stopped = chat_model.generate(prompts, max_new_tokens=16, stop=stop)
    for before, after in zip(free, stopped, strict=True):
        if stop in before.text:
            assert after.finish_reason == "stop"
            assert after.text == before.text[:before.text.find(stop)]
        else:
            assert after.finish_reason == "length" and after.text == before.text
