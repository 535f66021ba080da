"""The attack plugins: one module per attack family, each registering itself with ``@register_attack``.

Modules whose name starts with an underscore (shared helpers) are not imported by the registry.
"""
