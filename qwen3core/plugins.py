"""Discovering backend plugins through the ``qwen3core.backends`` entry-point group.

First-party backends are registered exactly like third-party ones: each is an entry point in
that group (see pyproject.toml). We read the entry points ourselves instead of calling pluggy's
``load_setuptools_entrypoints``, because that one lets the first of two same-named entry points
win silently; here a clash is an error naming both distributions.

``QWEN3CORE_BLOCK_PLUGINS`` (comma-separated entry-point names, or ``*`` for all) keeps plugins
from loading, for debugging a broken installation.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Iterable

import pluggy

from qwen3core import hookspecs
from qwen3core.errors import PluginError

ENTRY_POINT_GROUP = "qwen3core.backends"
BLOCK_ENV = "QWEN3CORE_BLOCK_PLUGINS"


def blocked_plugins() -> set[str]:
    raw = os.environ.get(BLOCK_ENV, "")
    return {name.strip() for name in raw.split(",") if name.strip()}


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def _distribution_name(ep: importlib.metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return dist.metadata["Name"] if dist is not None else "<unknown distribution>"


def get_plugin_manager(extra_plugins: Iterable[object] = (), *,
                       load_entry_points: bool = True) -> pluggy.PluginManager:
    """A plugin manager with every installed backend plugin, plus ``extra_plugins``
    (objects or modules with hook implementations, registered under their own names).

    Raises :class:`PluginError` for two entry points with one name, a plugin that fails to
    import, or a hook implementation whose name matches no hook (a misspelling).
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    if load_entry_points:
        blocked = blocked_plugins()
        seen: dict[str, str] = {}
        for ep in _entry_points():
            origin = _distribution_name(ep)
            if ep.name in seen and seen[ep.name] != f"{origin}:{ep.value}":
                raise PluginError(
                    f"two plugins are registered as {ep.name!r} in the {ENTRY_POINT_GROUP!r} "
                    f"entry-point group: {seen[ep.name]} and {origin}:{ep.value}; uninstall or "
                    f"rename one of them")
            if ep.name in seen:
                continue  # the same distribution seen twice on sys.path
            seen[ep.name] = f"{origin}:{ep.value}"
            if "*" in blocked or ep.name in blocked:
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                raise PluginError(
                    f"plugin {ep.name!r} ({origin}: {ep.value}) failed to import: "
                    f"{type(exc).__name__}: {exc}. Set {BLOCK_ENV}={ep.name} to skip it.") from exc
            _register(pm, plugin, ep.name)
    for plugin in extra_plugins:
        _register(pm, plugin, getattr(plugin, "__name__", None) or repr(plugin))
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(
            f"{exc}. Hook names are: {', '.join(sorted(hookspecs.HOOK_FOR_COMPONENT.values()))}"
        ) from exc
    return pm


def _register(pm: pluggy.PluginManager, plugin: object, name: str) -> None:
    if pm.is_registered(plugin):
        return
    if pm.get_plugin(name) is not None:
        raise PluginError(f"a plugin named {name!r} is already registered")
    try:
        pm.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {name!r} is invalid: {exc}") from exc
