"""Finding a quantization scheme by name among the installed scheme plugins.

A scheme is named by a string: ``int8``, ``int4``, with options after colons: a group size
``g64`` (``channel``: one group per output channel) and ``sym`` / ``zp`` for zero points, e.g.
``int4:g128:sym`` or ``int8:channel``. Options left out take the scheme's defaults.
"""

from __future__ import annotations

from collections.abc import Iterable

from qwen3core.quant.schemes import QuantizationError, QuantScheme, SchemeFamily


def scheme_families(plugins: Iterable[object] = ()) -> dict[str, SchemeFamily]:
    """name -> family, from every plugin's ``qwen3core_quant_scheme`` hook."""
    from qwen3core.plugins import get_plugin_manager

    families: dict[str, SchemeFamily] = {}
    pm = get_plugin_manager(list(plugins))
    for hook_impl in pm.hook.qwen3core_quant_scheme.get_hookimpls():
        result = hook_impl.function()
        items = [] if result is None else (
            [result] if isinstance(result, SchemeFamily) else list(result))
        for family in items:
            if not isinstance(family, SchemeFamily):
                raise QuantizationError(
                    f"plugin {pm.get_name(hook_impl.plugin)!r} returned "
                    f"{type(family).__name__} from qwen3core_quant_scheme, expected SchemeFamily")
            if family.name in families:
                raise QuantizationError(f"two quantization schemes are named {family.name!r}")
            families[family.name] = family
    return families


def resolve_scheme(scheme: str | QuantScheme, *, group_size: int | None | str = "default",
                   zero_point: bool | None = None, plugins: Iterable[object] = ()
                   ) -> QuantScheme:
    """A configured scheme from its name (see the module docstring) or as given."""
    if isinstance(scheme, QuantScheme):
        return scheme
    if not isinstance(scheme, str) or not scheme:
        raise QuantizationError(f"a quantization scheme is named by a string, got {scheme!r}")
    name, *options = scheme.split(":")
    families = scheme_families(plugins)
    if name not in families:
        raise QuantizationError(f"unknown quantization scheme {name!r}; installed: "
                                f"{', '.join(sorted(families)) or 'none'}")
    for option in options:
        if option == "channel":
            group_size = None
        elif option in ("sym", "zp"):
            zero_point = option == "zp"
        elif option.startswith("g") and option[1:].isdigit():
            group_size = int(option[1:])
        else:
            raise QuantizationError(f"unknown option {option!r} in scheme {scheme!r}; options "
                                    "are gN (group size), channel, sym, zp")
    return families[name].make(group_size, zero_point)
