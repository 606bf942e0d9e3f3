"""First-party backend plugins of qwen3core (import name ``qwen3core_backends``).

Each subpackage is one plugin, registered through the ``qwen3core.backends`` entry-point group
exactly as a third-party plugin would be.
"""
