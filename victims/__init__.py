"""The victim zoo: one module per architecture, each registering itself with ``@register_victim``.

Modules whose name starts with an underscore (shared helpers) are not imported by the registry.
"""
