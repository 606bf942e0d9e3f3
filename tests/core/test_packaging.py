"""The installed layout: every package directory is listed, and no generic import name leaks."""

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_package_directory_is_listed():
    tool = _pyproject()["tool"]["setuptools"]
    listed = set(tool["packages"])
    found = set()
    for import_root, directory in tool["package-dir"].items():
        base = ROOT / directory
        for init in base.rglob("__init__.py"):
            rel = init.parent.relative_to(base)
            found.add(".".join((import_root, *rel.parts)))
    missing = sorted(found - listed)
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {missing}"


def test_only_prefixed_top_level_import_names():
    tool = _pyproject()["tool"]["setuptools"]
    for name in tool["packages"]:
        assert name.split(".")[0] in {"qwen3core", "qwen3core_backends"}, name


def test_first_party_backends_are_entry_points():
    eps = _pyproject()["project"]["entry-points"]["qwen3core.backends"]
    assert eps["eager"] == "qwen3core_backends.eager"
    for target in eps.values():
        assert target.startswith("qwen3core_backends.")
