"""Chat templates: the model's own template, rendered exactly as transformers renders it."""

import copy
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qwen3core.chat_template import ChatTemplateError, render_chat_template
from qwen3core.tokenizer import Tokenizer

TOKENIZER_DIR = Path(__file__).resolve().parents[2] / "shared" / "qwen3-tokenizer"
needs_files = pytest.mark.skipif(not (TOKENIZER_DIR / "tokenizer.json").is_file(),
                                 reason=f"official Qwen3 tokenizer files not found at "
                                        f"{TOKENIZER_DIR} (see REFERENCE.md)")

HELLO = [{"role": "user", "content": "Hello, world!"}]




def hf_render(hf, messages, *, tokenize, **kwargs):
    """transformers' rendering; it receives a deep copy, so neither side can see the other's
    edits."""
    out = hf.apply_chat_template(copy.deepcopy(messages), tokenize=tokenize, return_dict=False,
                                 **copy.deepcopy(kwargs))
    return list(out) if tokenize else out


# --- the renderings recorded in shared/qwen3-tokenizer/SOURCE.md --------------------------
@needs_files
def test_known_renderings(tok):
    prompt = "<|im_start|>user\nHello, world!<|im_end|>\n<|im_start|>assistant\n"
    prompt_ids = [151644, 872, 198, 9707, 11, 1879, 0, 151645, 198, 151644, 77091, 198]
    assert tok.apply_chat_template(HELLO, tokenize=False) == prompt
    assert tok.apply_chat_template(HELLO) == prompt_ids
    assert tok.apply_chat_template(HELLO, enable_thinking=False, tokenize=False) \
        == prompt + "<think>\n\n</think>\n\n"
    assert tok.apply_chat_template(HELLO, enable_thinking=False) \
        == prompt_ids + [151667, 271, 151668, 271]
    assert tok.apply_chat_template(HELLO, add_generation_prompt=False, tokenize=False) \
        == "<|im_start|>user\nHello, world!<|im_end|>\n"


@needs_files
def test_earlier_reasoning_is_dropped_and_last_is_kept(tok):
    # The Qwen3 template keeps reasoning only for assistant turns after the last user query.
    messages = [{"role": "user", "content": "a"},
                {"role": "assistant", "content": "<think>\nold\n</think>\n\nA1"},
                {"role": "user", "content": "b"},
                {"role": "assistant", "content": "A2", "reasoning_content": "new"}]
    assert tok.apply_chat_template(messages, add_generation_prompt=False, tokenize=False) == (
        "<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n"
        "<|im_start|>user\nb<|im_end|>\n<|im_start|>assistant\n<think>\nnew\n</think>\n\n"
        "A2<|im_end|>\n")


# --- hypothesis conversations compared with transformers ----------------------------------
FRAGMENTS = ["<|im_start|>", "<|im_end|>", "<think>", "</think>", "<tool_call>",
             "<tool_response>", "</tool_response>", "\n", "\n\n", "  ", "世界", "🙂", "é",
             "{\"k\": 1}", "def f():\n    pass"]
text = st.lists(st.one_of(st.text(st.characters(codec="utf-8"), max_size=12),
                          st.sampled_from(FRAGMENTS)), max_size=4).map("".join)
newlines = st.sampled_from(["", "\n", "\n\n"])
json_value = st.recursive(st.none() | st.booleans() | st.integers(-99, 99) | text,
                          lambda inner: st.lists(inner, max_size=2)
                          | st.dictionaries(text, inner, max_size=2), max_leaves=4)
tool_name = st.sampled_from(["get_weather", "search", "run_code"])


@st.composite
def tool_call(draw):
    arguments = draw(st.dictionaries(st.sampled_from(["city", "q", "n", "code"]), json_value,
                                     max_size=3))
    if draw(st.booleans()):  # OpenAI clients send arguments as a JSON string
        arguments = json.dumps(arguments)
    call = {"name": draw(tool_name), "arguments": arguments}
    return {"type": "function", "function": call} if draw(st.booleans()) else call


@st.composite
def assistant_turn(draw):
    """One assistant message, possibly with its tool round-trip after it."""
    answer = draw(text)
    kind = draw(st.sampled_from(["plain", "think_in_content", "reasoning_content",
                                 "reasoning_alias", "tool_calls"]))
    if kind == "plain":
        return [{"role": "assistant", "content": answer}]
    if kind == "think_in_content":
        return [{"role": "assistant", "content": "<think>" + draw(newlines) + draw(text)
                 + draw(newlines) + "</think>" + draw(newlines) + answer}]
    if kind in ("reasoning_content", "reasoning_alias"):
        field = "reasoning_content" if kind == "reasoning_content" else "reasoning"
        return [{"role": "assistant", "content": answer, field: draw(newlines) + draw(text)}]
    message = {"role": "assistant",
               "content": draw(st.sampled_from(["", None, answer])),
               "tool_calls": draw(st.lists(tool_call(), min_size=1, max_size=2))}
    results = [{"role": "tool", "content": draw(text)}
               for _ in range(draw(st.integers(1, 2)))]
    return [message, *results]


@st.composite
def user_turn(draw):
    content = draw(text)
    if draw(st.integers(0, 4)) == 0:  # what a multi-step tool loop looks like to the template
        content = "<tool_response>" + content + "</tool_response>"
    return [{"role": "user", "content": content}]


@st.composite
def conversation(draw):
    messages = []
    if draw(st.booleans()):
        messages.append({"role": "system", "content": draw(text)})
    for _ in range(draw(st.integers(1, 3))):
        messages += draw(user_turn())
        if draw(st.booleans()):
            messages += draw(assistant_turn())
    if draw(st.booleans()):
        messages += draw(assistant_turn())
    return messages


TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city, <b>now</b> & later",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}},
    {"type": "function", "function": {"name": "search", "description": "Search 世界",
                                      "parameters": {"type": "object", "properties": {}}}}]


@needs_files
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=conversation(), enable_thinking=st.booleans(),
       add_generation_prompt=st.booleans(), with_tools=st.booleans())
def test_conversations_render_like_transformers(tok, hf, messages, enable_thinking,
                                                add_generation_prompt, with_tools):
    kwargs = {"enable_thinking": enable_thinking, "add_generation_prompt": add_generation_prompt,
                  "tools": TOOLS if with_tools else None}
    before = copy.deepcopy(messages)
    assert tok.apply_chat_template(messages, tokenize=False, **kwargs) \
        == hf_render(hf, messages, tokenize=False, **kwargs)
    assert tok.apply_chat_template(messages, **kwargs) == hf_render(hf, messages, tokenize=True,
                                                                    **kwargs)
    assert messages == before  # the caller's messages are never modified


# --- other templates: the renderer must match transformers on any template ---------------
# Written for these tests in the style of other Qwen3 variants: a Thinking-2507-like template
# that opens <think> in the generation prompt, and a Coder-like template with XML tool calls
# that uses loop controls, namespaces, tojson options, raise_exception and {% generation %},
# and whitespace that only trim_blocks/lstrip_blocks make right.
THINKING_STYLE = """{%- for message in messages %}
{{- '<|im_start|>' + message.role + '\\n' }}
{%- if message.role == 'assistant' and message.reasoning_content is defined %}
{{- '<think>\\n' + message.reasoning_content + '\\n</think>\\n\\n' }}
{%- endif %}
{{- message.content + '<|im_end|>\\n' }}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n<think>\\n' }}{%- endif %}"""

CODER_STYLE = """{% if tools %}
<|im_start|>system
# Tools ({{ tools | length }})
{% for tool in tools %}
    {% if loop.index0 >= 5 %}{% break %}{% endif %}
  - {{ tool.function.name }}
{% endfor %}
<|im_end|>
{% endif %}
{%- set ns = namespace(n_tools=0) %}
{%- if tools %}{{- '<|im_start|>system\\n<tools>' }}
{%- for tool in tools %}{%- set ns.n_tools = ns.n_tools + 1 %}
{{- '\\n' + (tool.function | tojson(indent=2, sort_keys=true)) }}
{%- endfor %}{{- '\\n</tools> (' ~ ns.n_tools ~ ')<|im_end|>\\n' }}{%- endif %}
{%- for message in messages %}
  {%- if message.role not in ['system', 'user', 'assistant', 'tool'] %}
    {{- raise_exception('Unknown role: ' + message.role) }}
  {%- endif %}
  {%- if message.role == 'system' and loop.index0 > 0 %}{% continue %}{% endif %}
  {{- '<|im_start|>' + message.role + '\\n' }}
  {%- if message.role == 'assistant' %}{% generation %}{{- message.content or '' }}
    {%- for call in message.tool_calls or [] %}
      {{- '\\n<tool_call>\\n<function=' + call.function.name + '>' }}
      {%- for key, value in call.function.arguments | dictsort %}
        {{- '\\n<parameter=' + key + '>\\n' }}
        {{- value if value is string else value | tojson }}
        {{- '\\n</parameter>' }}
      {%- endfor %}
      {{- '\\n</function>\\n</tool_call>' }}
    {%- endfor %}{% endgeneration %}
  {%- else %}{{- message.content }}{%- endif %}
  {{- '<|im_end|>\\n' }}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"""

CODER_MESSAGES = [
    {"role": "system", "content": "You write code."},
    {"role": "system", "content": "skipped by {% continue %}"},
    {"role": "user", "content": "Plot <sin> & cos"},
    {"role": "assistant", "content": None, "tool_calls": [{"type": "function", "function": {
        "name": "run_code", "arguments": {"code": "print('世界')", "timeout": 5,
                                          "opts": {"a": [1, "<b>"]}}}}]},
    {"role": "tool", "content": "世界"},
]


@needs_files
@pytest.mark.parametrize("template,messages,tools", [
    (THINKING_STYLE, [{"role": "user", "content": "q"},
                      {"role": "assistant", "content": "a", "thinking": "r"},
                      {"role": "user", "content": "q2"}], None),
    (CODER_STYLE, CODER_MESSAGES, TOOLS),
], ids=["thinking-2507-style", "coder-style"])
def test_other_templates_render_like_transformers(hf, template, messages, tools):
    for add_generation_prompt in (True, False):
        ours = render_chat_template(template, messages, tools=tools,
                                    add_generation_prompt=add_generation_prompt,
                                    special_tokens={"eos_token": "<|im_end|>"})
        theirs = hf_render(hf, messages, tokenize=False, chat_template=template, tools=tools,
                           add_generation_prompt=add_generation_prompt)
        assert ours == theirs
    assert "<tool_call>" in ours or "<think>\nr\n</think>" in ours  # the template really ran


@needs_files
def test_a_model_directory_with_another_template_uses_it(tmp_path, tok):
    (tmp_path / "tokenizer.json").symlink_to(TOKENIZER_DIR / "tokenizer.json")
    config = json.loads((TOKENIZER_DIR / "tokenizer_config.json").read_text())
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({**config,
                                                                "chat_template": THINKING_STYLE}))
    thinking = Tokenizer.from_dir(tmp_path)
    assert thinking.apply_chat_template(HELLO, tokenize=False).endswith(
        "<|im_start|>assistant\n<think>\n")
    assert thinking.apply_chat_template(HELLO)[-2:] == [151667, 198]  # "<think>", "\n"


# --- errors and the sandbox (no tokenizer files needed) ------------------------------------
def test_template_errors_are_clear():
    with pytest.raises(ChatTemplateError, match="Unknown role: robot"):
        render_chat_template(CODER_STYLE, [{"role": "robot", "content": "x"}],
                             add_generation_prompt=True)
    with pytest.raises(ChatTemplateError, match="not valid jinja"):
        render_chat_template("{% for %}", HELLO, add_generation_prompt=True)
    with pytest.raises(ChatTemplateError, match="non-empty list"):
        render_chat_template(CODER_STYLE, [], add_generation_prompt=True)
    with pytest.raises(ChatTemplateError, match="non-empty list"):
        render_chat_template(CODER_STYLE, {"role": "user", "content": "x"},
                             add_generation_prompt=True)
    with pytest.raises(ChatTemplateError, match="message 1 must be a dict"):
        render_chat_template(CODER_STYLE, [HELLO[0], "hi"], add_generation_prompt=True)
    with pytest.raises(ChatTemplateError, match="tool 0 must be a JSON-schema dict"):
        render_chat_template(CODER_STYLE, HELLO, tools=[print], add_generation_prompt=True)
    with pytest.raises(ChatTemplateError, match="message 0 holds a value of type object"):
        render_chat_template(CODER_STYLE, [{"role": "user", "content": object()}],
                             add_generation_prompt=True)


@pytest.mark.parametrize("template", [
    "{{ ''.__class__.__mro__ }}",
    "{{ messages.append(1) }}",
    "{% set ns = namespace() %}{% set ns._secret = 1 %}",
    "{{ cycler.__init__.__globals__ }}",
])
def test_templates_are_sandboxed(template):
    messages = [{"role": "user", "content": "x"}]
    with pytest.raises(ChatTemplateError):
        render_chat_template(template, messages, add_generation_prompt=True)
    assert messages == [{"role": "user", "content": "x"}]


def test_template_sees_plain_data_and_kwargs():
    template = ("{{ messages[0].reasoning_content }}|{{ messages[0].thinking }}|"
                "{{ 'content' in messages[0] }}|{{ extra }}|{{ eos_token }}|"
                "{{ {'a': '<&>'} | tojson }}|{{ strftime_now('%Y') | length }}")
    out = render_chat_template(template, [{"role": "assistant", "content": None,
                                           "reasoning": "r"}],
                               add_generation_prompt=False, special_tokens={"eos_token": "E"},
                               extra=("tu", "ple"))
    assert out == "r|r|False|('tu', 'ple')|E|{\"a\": \"<&>\"}|4"
