"""Plugin discovery through real entry points, and the errors a broken setup must produce."""

import importlib
import sys
import textwrap

import pytest
import torch

import qwen3core
from qwen3core import BackendSelectionError, Implementation, PluginError, hookimpl
from qwen3core.plugins import get_plugin_manager
from qwen3core.registry import Registry, get_registry, reset_registry_cache


def install_fake_distribution(tmp_path, monkeypatch, dist, module, source, ep_name):
    """Write a module plus a ``.dist-info`` with an entry point, and put it on sys.path: the
    same metadata pip writes, read by importlib.metadata exactly as for a real install."""
    (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
    info = tmp_path / f"{dist.replace('-', '_')}-0.1.dist-info"  # as pip names it
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[qwen3core.backends]\n{ep_name} = {module}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    monkeypatch.delitem(sys.modules, module, raising=False)


PLUGIN_SOURCE = """
    from qwen3core import Implementation, hookimpl
    from qwen3core_backends.eager.attention import eager_attention

    @hookimpl
    def qwen3core_attention():
        return Implementation("attention", "demo", lambda ctx: eager_attention,
                              summary="third-party demo")
"""


def test_entry_point_plugin_is_discovered_and_selectable(tmp_path, monkeypatch):
    install_fake_distribution(tmp_path, monkeypatch, "qwen3core-demo", "qwen3core_demo_plugin",
                              PLUGIN_SOURCE, "demo")
    registry = Registry.from_plugin_manager(get_plugin_manager())
    impl = registry.get("attention", "demo")
    assert impl.plugin == "demo" and impl.summary == "third-party demo"
    # First-party backends come through the same entry-point group.
    assert registry.get("attention", "eager").plugin == "eager"
    reset_registry_cache()
    try:
        loaded = qwen3core.load("random:tiny", device="cpu", backends={"attention": "demo"})
        assert loaded.backends["attention"] == "demo"
        assert loaded.model(torch.tensor([[1, 2, 3]])).shape == (1, 3, 512)
    finally:
        reset_registry_cache()  # later tests must not see the fake distribution


def test_two_entry_points_with_one_name_are_an_error(tmp_path, monkeypatch):
    install_fake_distribution(tmp_path, monkeypatch, "qwen3core-impostor", "impostor_plugin",
                              PLUGIN_SOURCE, "eager")
    with pytest.raises(PluginError, match="two plugins are registered as 'eager'"):
        get_plugin_manager()


def test_block_environment_variable_skips_a_plugin(tmp_path, monkeypatch):
    install_fake_distribution(tmp_path, monkeypatch, "qwen3core-demo", "qwen3core_demo_plugin",
                              PLUGIN_SOURCE, "demo")
    monkeypatch.setenv("QWEN3CORE_BLOCK_PLUGINS", "demo")
    registry = Registry.from_plugin_manager(get_plugin_manager())
    assert "demo" not in [i.name for i in registry.implementations("attention")]


def test_plugin_that_fails_to_import_names_itself(tmp_path, monkeypatch):
    install_fake_distribution(tmp_path, monkeypatch, "qwen3core-broken", "broken_plugin",
                              "raise ImportError('needs libfoo')\n", "broken")
    with pytest.raises(PluginError, match="plugin 'broken'.*needs libfoo.*QWEN3CORE_BLOCK_PLUGINS"):
        get_plugin_manager()


class Misspelled:
    @hookimpl
    def qwen3core_atention(self):  # one "t" short
        return None


def test_misspelled_hook_is_an_error():
    with pytest.raises(PluginError, match="qwen3core_atention"):
        get_registry([Misspelled()])


class DuplicateEager:
    @hookimpl
    def qwen3core_norm(self):
        return Implementation("norm", "eager", lambda ctx, dim, eps: None)


def test_duplicate_implementation_name_is_an_error():
    with pytest.raises(PluginError, match="two implementations of 'norm' are named 'eager'"):
        get_registry([DuplicateEager()])


class WrongComponent:
    @hookimpl
    def qwen3core_norm(self):
        return Implementation("attention", "sneaky", lambda ctx: None)


def test_implementation_returned_from_the_wrong_hook_is_an_error():
    with pytest.raises(PluginError, match="from hook 'qwen3core_norm'"):
        get_registry([WrongComponent()])


def test_unknown_selection_lists_what_exists():
    with pytest.raises(BackendSelectionError, match=r"unknown attention implementation 'nope'.*eager"):
        qwen3core.load("random:tiny", device="cpu", backends={"attention": "nope"})
    with pytest.raises(BackendSelectionError, match="unknown component 'atention'"):
        qwen3core.load("random:tiny", device="cpu", backends={"atention": "eager"})


class NeedsGPU:
    @hookimpl
    def qwen3core_attention(self):
        def check(device, dtype):
            return None if device.type == "cuda" else "needs a CUDA device"
        return Implementation("attention", "gpu-only", lambda ctx: None, priority=100,
                              check=check)


def test_unavailable_selection_gives_the_reason_and_is_never_picked_silently():
    with pytest.raises(BackendSelectionError, match="'gpu-only' is unavailable on cpu.*needs a CUDA"):
        qwen3core.load("random:tiny", device="cpu", backends={"attention": "gpu-only"},
                       plugins=[NeedsGPU()])
    # Left unselected, the highest-priority *available* implementation is chosen instead.
    loaded = qwen3core.load("random:tiny", device="cpu", plugins=[NeedsGPU()])
    assert loaded.backends["attention"] != "gpu-only"


def test_highest_priority_available_implementation_is_the_default():
    class Preferred:
        @hookimpl
        def qwen3core_norm(self):
            from qwen3core_backends.eager.norm import RMSNorm
            return Implementation(
                "norm", "preferred",
                lambda ctx, dim, eps: RMSNorm(dim, eps, dtype=ctx.dtype, device=ctx.device),
                priority=1000)

    registry = get_registry([Preferred()])
    assert registry.select(None, device="cpu", dtype=torch.float32)["norm"].name == "preferred"
    assert registry.select({"norm": "eager"}, device="cpu")["norm"].name == "eager"


# -- hardening (issue 18 item 5) ---------------------------------------------------------------
def test_a_plugin_calling_sys_exit_at_import_is_an_error_naming_it(tmp_path, monkeypatch):
    install_fake_distribution(tmp_path, monkeypatch, "qwen3core-quitter", "quitter_plugin",
                              "import sys\nsys.exit(0)\n", "quitter")
    with pytest.raises(PluginError, match=r"plugin 'quitter'.*SystemExit.*"
                                          r"QWEN3CORE_BLOCK_PLUGINS=quitter.*QWEN3CORE_PLUGINS"):
        get_plugin_manager()


def test_the_cli_does_not_exit_zero_when_a_plugin_exits_at_import(tmp_path):
    import os
    import subprocess

    (tmp_path / "quitter_plugin.py").write_text("import sys\nsys.exit(0)\n")
    info = tmp_path / "qwen3core_quitter-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: qwen3core-quitter\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[qwen3core.backends]\nquitter = quitter_plugin\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "qwen3core.cli", "backends"], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode != 0
    assert "quitter" in done.stderr and "QWEN3CORE_BLOCK_PLUGINS=quitter" in done.stderr


@pytest.mark.parametrize("body, complaint", [
    ("return 42", r"returned int 42, expected a qwen3core.Implementation"),
    ("raise RuntimeError('boom')", r"raised RuntimeError: boom"),
    ("raise SystemExit(0)", r"raised SystemExit"),
])
def test_a_misbehaving_hook_names_its_plugin_and_how_to_block_it(tmp_path, monkeypatch, body,
                                                                  complaint):
    source = f"""
        from qwen3core import hookimpl

        @hookimpl
        def qwen3core_norm():
            {body}
    """
    install_fake_distribution(tmp_path, monkeypatch, "qwen3core-odd", "odd_plugin", source, "odd")
    with pytest.raises(PluginError, match=rf"plugin 'odd' {complaint}.*"
                                          rf"QWEN3CORE_BLOCK_PLUGINS=odd") as info:
        Registry.from_plugin_manager(get_plugin_manager())
    assert "qwen3core_norm" in str(info.value)


def test_the_allow_list_loads_only_the_plugins_it_names(tmp_path, monkeypatch):
    install_fake_distribution(tmp_path, monkeypatch, "qwen3core-broken", "broken_plugin",
                              "raise ImportError('needs libfoo')\n", "broken")
    monkeypatch.setenv("QWEN3CORE_PLUGINS", "eager, sdpa")
    registry = Registry.from_plugin_manager(get_plugin_manager())  # broken is never imported
    assert {i.plugin for c in registry.components() for i in registry.implementations(c)} == {
        "eager", "sdpa"}
    monkeypatch.setenv("QWEN3CORE_PLUGINS", "eager,no-such-plugin")
    with pytest.raises(PluginError, match="QWEN3CORE_PLUGINS names no-such-plugin"):
        get_plugin_manager()


def test_qwen3_backends_marks_a_third_party_default_over_first_party(tmp_path, monkeypatch,
                                                                      capsys):
    from qwen3core.cli import main

    source = PLUGIN_SOURCE.replace('summary="third-party demo"',
                                   'summary="third-party demo", priority=1000')
    install_fake_distribution(tmp_path, monkeypatch, "qwen3core-demo", "qwen3core_demo_plugin",
                              source, "demo")
    reset_registry_cache()
    try:
        assert main(["backends", "--json"]) == 0
        import json

        rows = json.loads(capsys.readouterr().out)["implementations"]
        demo = next(r for r in rows if r["name"] == "demo")
        first_party = {r["name"] for r in rows if r["component"] == "attention"
                       and r["available"] and not r["third_party"]}
        assert demo["default"] and demo["third_party"] and demo["overrides"] in first_party
        eager = next(r for r in rows if r["name"] == "eager" and r["component"] == "attention")
        assert not eager["third_party"] and eager["overrides"] is None
        assert main(["backends"]) == 0
        out = capsys.readouterr().out
        assert ("note: attention defaults to 'demo' from the third-party plugin 'demo', over "
                "the first-party") in out
        assert "QWEN3CORE_BLOCK_PLUGINS=demo" in out
    finally:
        reset_registry_cache()


class BrokenFactory:
    @hookimpl
    def qwen3core_norm(self):
        def factory(ctx, dim, eps):
            raise ValueError("bad norm")
        return Implementation("norm", "broken-norm", factory)


def test_a_factory_that_raises_names_its_plugin():
    with pytest.raises(PluginError, match=r"norm implementation 'broken-norm' of plugin "
                                          r"'.*BrokenFactory.*' failed to build: ValueError: "
                                          r"bad norm"):
        qwen3core.load("random:tiny", backends={"norm": "broken-norm"},
                       plugins=[BrokenFactory()])
