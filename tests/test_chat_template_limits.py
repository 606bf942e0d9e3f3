"""Untrusted chat templates are bounded in time and output, and every failure is a
ChatTemplateError (issue 18 item 4); the sandbox still refuses escapes."""

import time

import pytest

from qwen3core import chat_template_limits
from qwen3core.chat_template import ChatTemplateError, render_chat_template

MESSAGES = [{"role": "user", "content": "hi"}]


def _render(template: str, **kwargs) -> str:
    return render_chat_template(template, MESSAGES, add_generation_prompt=True, **kwargs)


@pytest.mark.parametrize("template, complaint", [
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}x",
     "longer than"),
    ("{{ range(10**9)|list }}", "numbers above"),
    ("{{ range(0, 10**6, 2)|list }}", "the sandbox allows"),
    ("{{ 'a' * 10**10 }}", "repeating 1 items"),
    ("{{ [1] * 10**10 }}", "repeating 1 items"),
    ("{{ 10 ** 100000 }}", "digits"),
    ("{{ 'a'.center(10**10) }}", "numbers above"),
    ("{{ 'a'|center(10**10) }}", "numbers above"),
    ("{{ '%10000000000s' % 'a' }}", "width"),
    ("{{ '{:>10000000000}'.format('a') }}", "width"),
    ("{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}", "exceeds"),
    ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "recursed"),
    ("{{ 1 / 0 }}", "ZeroDivisionError"),
    ("", "empty prompt"),
    ("{% if false %}x{% endif %}", "empty prompt"),
    ("{{ ''.__class__.__mro__ }}", "unsafe|rejected|failed"),  # the sandbox, still there
])
def test_a_hostile_or_broken_template_is_a_chat_template_error(template, complaint, monkeypatch):
    monkeypatch.setattr(chat_template_limits, "MAX_RENDER_SECONDS", 1.0)
    monkeypatch.setattr(chat_template_limits, "MAX_OUTPUT_CHARS", 10**6)
    started = time.monotonic()
    with pytest.raises(ChatTemplateError, match=complaint):
        _render(template)
    assert time.monotonic() - started < 30


def test_ordinary_template_features_still_work():
    template = ("{% for m in messages %}{{ m.role|upper|center(10) }}:{{ m.content }}"
                "{{ '%5d' % loop.index }}{{ '{:>3}'.format(1) }}{% endfor %}"
                "{{ range(3)|list|length }}{{ 'ab' * 3 }}{{ 2 ** 10 }}"
                "{% for i in range(10)|reverse %}{{ i }}{% endfor %}{{ 1700000000|string }}")
    assert _render(template) == ("   USER   :hi    1  13ababab1024" + "9876543210" +
                                 "1700000000")


def test_the_official_template_renders_within_the_bounds(tok):
    text = tok.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    assert text.endswith("<|im_start|>assistant\n")
