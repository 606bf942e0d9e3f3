import json

import pytest

from qwen3core.cli import main


def test_backends_lists_every_component_with_eager_available(capsys):
    assert main(["backends", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)["implementations"]
    components = {r["component"] for r in table}
    assert components == {"attention", "norm", "rope", "kv_cache", "linear", "mlp", "moe",
                          "runner"}
    for component in components:
        eager = [r for r in table if r["component"] == component and r["plugin"] == "eager"]
        assert eager and eager[0]["available"], component
        assert sum(r["default"] for r in table if r["component"] == component) == 1


def test_backends_table_is_human_readable(capsys):
    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    assert "component" in out and "available" in out and "dynamic" in out


def test_info_counts_parameters_of_the_06b_preset(capsys):
    assert main(["info", "--model", "random:0.6B", "--device", "cpu", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["parameters"] == 751_632_384
    assert info["parameters_unique"] == 596_049_920
    assert info["weights_bytes"]["bfloat16"] == 2 * 596_049_920
    assert set(info["backends"]) >= {"attention", "kv_cache", "moe"}
    assert main(["info", "--model", "random:0.6B", "--device", "cpu"]) == 0
    assert "751,632,384" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["info", "--model", "random:7B"], "unknown preset '7B'"),
    (["info", "--model", "random:tiny", "--backend", "attention"], "COMPONENT=NAME"),
    (["info", "--model", "random:tiny", "--backend", "attention=nope"], "unknown attention"),
    (["info", "--model", "random:tiny", "--dtype", "float8"], "unknown dtype"),
])
def test_bad_input_is_one_line_error_not_a_traceback(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
