"""Discovering backend plugins through the ``qwen3core.backends`` entry-point group.

First-party backends are registered exactly like third-party ones: each is an entry point in
that group (see pyproject.toml). We read the entry points ourselves instead of calling pluggy's
``load_setuptools_entrypoints``, because that one lets the first of two same-named entry points
win silently; here a clash is an error naming both distributions.

``QWEN3CORE_BLOCK_PLUGINS`` (comma-separated entry-point names, or ``*`` for all) keeps plugins
from loading, for debugging a broken installation. ``QWEN3CORE_PLUGINS`` is the allow-list
beside it: when set, only the entry points it names load (``QWEN3CORE_PLUGINS=eager,cpu``), so
one broken or unwanted plugin cannot take part without the user knowing its name first.

A plugin's import runs its code in our process: whatever it raises, ``SystemExit`` included,
becomes a :class:`PluginError` naming the plugin and how to keep it out.
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
ALLOW_ENV = "QWEN3CORE_PLUGINS"
#: Where the first-party backends live (installed from this repository's ``backends/``).
FIRST_PARTY_PACKAGE = "qwen3core_backends"


def blocked_plugins() -> set[str]:
    raw = os.environ.get(BLOCK_ENV, "")
    return {name.strip() for name in raw.split(",") if name.strip()}


def allowed_plugins() -> set[str] | None:
    """The allow-list, or None when ``QWEN3CORE_PLUGINS`` is unset (everything may load)."""
    raw = os.environ.get(ALLOW_ENV)
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def how_to_exclude(name: str) -> str:
    """The sentence every plugin error ends with."""
    return (f"Set {BLOCK_ENV}={name} to skip it, or {ALLOW_ENV}=<names> to load only the "
            f"plugins you name (`qwen3 backends` lists them)")


def is_first_party(plugin: object) -> bool:
    module = getattr(plugin, "__name__", "") or ""
    return module == FIRST_PARTY_PACKAGE or module.startswith(FIRST_PARTY_PACKAGE + ".")


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
        blocked, allowed = blocked_plugins(), allowed_plugins()
        seen: dict[str, str] = {}
        entry_points = _entry_points()
        if allowed is not None:
            unknown = allowed - {ep.name for ep in entry_points}
            if unknown:
                raise PluginError(
                    f"{ALLOW_ENV} names {', '.join(sorted(unknown))}, which no installed plugin "
                    f"is called; installed: {', '.join(sorted({ep.name for ep in entry_points}))}")
        for ep in entry_points:
            origin = _distribution_name(ep)
            if ep.name in seen and seen[ep.name] != f"{origin}:{ep.value}":
                raise PluginError(
                    f"two plugins are registered as {ep.name!r} in the {ENTRY_POINT_GROUP!r} "
                    f"entry-point group: {seen[ep.name]} and {origin}:{ep.value}; uninstall or "
                    f"rename one of them")
            if ep.name in seen:
                continue  # the same distribution seen twice on sys.path
            seen[ep.name] = f"{origin}:{ep.value}"
            if "*" in blocked or ep.name in blocked or (allowed is not None
                                                        and ep.name not in allowed):
                continue
            try:
                plugin = ep.load()
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # SystemExit too: never exit silently
                raise PluginError(
                    f"plugin {ep.name!r} ({origin}: {ep.value}) failed to import: "
                    f"{type(exc).__name__}: {exc}. {how_to_exclude(ep.name)}") from exc
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
