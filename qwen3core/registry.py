"""The backend registry: every implementation the installed plugins provide, and selection.

Selection is explicit and loud. A component the user names must exist and be available on the
requested device and dtype, or :class:`BackendSelectionError` says what exists and why each
candidate was rejected. A component the user leaves out gets the available implementation with
the highest declared priority, and :meth:`Selection.names` reports which one that was.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

import pluggy
import torch

from qwen3core.contracts import COMPONENTS, Implementation, Selection
from qwen3core.errors import BackendSelectionError, PluginError
from qwen3core.hookspecs import HOOK_FOR_COMPONENT


@dataclass(frozen=True)
class Availability:
    implementation: Implementation
    reason: str | None  # None when available

    @property
    def available(self) -> bool:
        return self.reason is None


class Registry:
    """component -> name -> Implementation, gathered from a plugin manager's hooks."""

    def __init__(self, implementations: Iterable[Implementation],
                 third_party: Iterable[str] = ()):
        self._by_component: dict[str, dict[str, Implementation]] = {c: {} for c in COMPONENTS}
        #: Names of the plugins not shipped with qwen3core (see ``qwen3 backends``).
        self.third_party: frozenset[str] = frozenset(third_party)
        for impl in implementations:
            self._add(impl)

    @classmethod
    def from_plugin_manager(cls, pm: pluggy.PluginManager) -> Registry:
        from qwen3core.plugins import how_to_exclude, is_first_party

        gathered: list[Implementation] = []
        third_party: set[str] = set()
        for component, hook_name in HOOK_FOR_COMPONENT.items():
            hook = getattr(pm.hook, hook_name)
            for hook_impl in hook.get_hookimpls():
                plugin_name = pm.get_name(hook_impl.plugin) or repr(hook_impl.plugin)
                if not is_first_party(hook_impl.plugin):
                    third_party.add(plugin_name)
                try:
                    result = hook_impl.function()
                except KeyboardInterrupt:
                    raise
                except BaseException as exc:  # SystemExit too, with a name
                    raise PluginError(
                        f"hook {hook_name!r} of plugin {plugin_name!r} raised "
                        f"{type(exc).__name__}: {exc}. {how_to_exclude(plugin_name)}") from exc
                for impl in _as_list(result, hook_name, plugin_name):
                    if impl.component != component:
                        raise PluginError(
                            f"plugin {plugin_name!r} returned an implementation of "
                            f"{impl.component!r} from hook {hook_name!r}, which provides "
                            f"{component!r}")
                    gathered.append(replace(impl, plugin=plugin_name))
        return cls(gathered, third_party)

    def _add(self, impl: Implementation) -> None:
        if impl.component not in self._by_component:
            raise PluginError(f"unknown component {impl.component!r} in {impl!r}; components "
                              f"are {', '.join(COMPONENTS)}")
        existing = self._by_component[impl.component].get(impl.name)
        if existing is not None:
            raise PluginError(
                f"two implementations of {impl.component!r} are named {impl.name!r}: one from "
                f"plugin {existing.plugin!r}, one from plugin {impl.plugin!r}; names must be "
                f"unique per component")
        self._by_component[impl.component][impl.name] = impl

    # -- queries ----------------------------------------------------------------------------------
    def components(self) -> tuple[str, ...]:
        return COMPONENTS

    def implementations(self, component: str) -> list[Implementation]:
        self._check_component(component)
        return sorted(self._by_component[component].values(), key=lambda i: (-i.priority, i.name))

    def get(self, component: str, name: str) -> Implementation:
        self._check_component(component)
        try:
            return self._by_component[component][name]
        except KeyError:
            known = ", ".join(i.name for i in self.implementations(component)) or "none"
            raise BackendSelectionError(
                f"unknown {component} implementation {name!r}; installed: {known}. "
                f"Run `qwen3 backends` to see every implementation and its status") from None

    def availability(self, component: str, device: torch.device | str = "cpu",
                     dtype: torch.dtype = torch.float32) -> list[Availability]:
        device = torch.device(device)
        return [Availability(impl, impl.unavailable_reason(device, dtype))
                for impl in self.implementations(component)]

    def _check_component(self, component: str) -> None:
        if component not in self._by_component:
            raise BackendSelectionError(
                f"unknown component {component!r}; components are {', '.join(COMPONENTS)}")

    # -- selection --------------------------------------------------------------------------------
    def select(self, requested: Mapping[str, str] | None = None, *,
               device: torch.device | str = "cpu",
               dtype: torch.dtype = torch.float32, training: bool = False) -> Selection:
        """Resolve one implementation per component; see the module docstring. With
        ``training`` only implementations that support autograd qualify."""
        requested = dict(requested or {})
        device = torch.device(device)
        for component in requested:
            self._check_component(component)
        selection = Selection()
        for component in COMPONENTS:
            if component in requested:
                impl = self.get(component, requested[component])
                reason = _reason(impl, device, dtype, training)
                if reason is not None:
                    raise BackendSelectionError(
                        f"{component} implementation {impl.name!r} is unavailable on "
                        f"{device} with {_dtype_name(dtype)}: {reason}. "
                        f"{self._alternatives(component, device, dtype)}")
                selection[component] = impl
                continue
            # Highest priority first, and stop at the first usable one: lower-priority checks
            # may be expensive (importing a compiler stack) and their answer is not needed.
            rejected = []
            for impl in self.implementations(component):
                reason = _reason(impl, device, dtype, training)
                if reason is None:
                    selection[component] = impl
                    break
                rejected.append(f"{impl.name}: {reason}")
            else:
                raise BackendSelectionError(
                    f"no {component} implementation is available on {device} with "
                    f"{_dtype_name(dtype)} ({'; '.join(rejected) or 'none installed'}). Is the "
                    f"first-party 'eager' plugin blocked or uninstalled?")
        return selection

    def _alternatives(self, component: str, device: torch.device, dtype: torch.dtype) -> str:
        parts = []
        for a in self.availability(component, device, dtype):
            parts.append(f"{a.implementation.name} ({'available' if a.available else a.reason})")
        return f"Installed {component} implementations: " + ", ".join(parts)


def _reason(impl: Implementation, device: torch.device, dtype: torch.dtype,
            training: bool) -> str | None:
    if training and not impl.supports_autograd:
        return "does not support autograd (training=True needs gradients)"
    return impl.unavailable_reason(device, dtype)


def _as_list(result: object, hook_name: str, plugin_name: str) -> list[Implementation]:
    from qwen3core.plugins import how_to_exclude

    if result is None:
        return []
    if isinstance(result, Implementation):
        items: list[object] = [result]
    elif isinstance(result, (list, tuple)):
        items = list(result)
    else:
        items = [result]
    for item in items:
        if not isinstance(item, Implementation):
            raise PluginError(f"hook {hook_name!r} of plugin {plugin_name!r} returned "
                              f"{type(item).__name__} {item!r:.60}, expected a "
                              f"qwen3core.Implementation, a list of them or None. "
                              f"{how_to_exclude(plugin_name)}")
    return items


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


_default_registry: Registry | None = None


def get_registry(extra_plugins: Iterable[object] = ()) -> Registry:
    """The registry of installed plugins (cached), or a fresh one including ``extra_plugins``."""
    global _default_registry
    from qwen3core.plugins import get_plugin_manager

    extra = list(extra_plugins)
    if extra:
        return Registry.from_plugin_manager(get_plugin_manager(extra))
    if _default_registry is None:
        _default_registry = Registry.from_plugin_manager(get_plugin_manager())
    return _default_registry


def reset_registry_cache() -> None:
    """Forget the cached registry (after installing a plugin in the same process)."""
    global _default_registry
    _default_registry = None
