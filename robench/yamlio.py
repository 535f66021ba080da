"""Strict YAML for robench's own files: duplicate keys rejected, aliases bounded, UTF-8 only.

``yaml.safe_load`` accepts ``{a: 1, a: 2}`` (the last wins, silently) and expands nested aliases
without limit (a 480-byte "billion laughs" document grows by 10x per level in whatever walks it).
:func:`load_yaml` builds the document with PyYAML's safe loader but

- rejects a mapping key given twice, naming the key and its line;
- counts the nodes of the document *with aliases expanded* (memoised per node, so counting is
  linear in the file) and refuses more than :data:`MAX_NODES`;
- rejects bytes that are not UTF-8, naming the byte offset.

Every failure is a one-line :class:`~robench.errors.ConfigError` ending in ``in SOURCE``.
"""

from __future__ import annotations

from typing import Any

import yaml

from robench.errors import ConfigError

MAX_NODES = 100_000  # a benchmark definition has a few hundred


class _StrictLoader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:  # the node's own keys (a '<<' merge may be overridden)
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key = self.construct_object(key_node, deep=deep)
                try:
                    hash(key)
                except TypeError:
                    continue  # unhashable keys fail in the base class with their own message
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first at line {seen[key] + 1})",
                        key_node.start_mark,
                    )  # fmt: skip
                seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """Nodes of ``node`` with every alias expanded (an alias shares its anchor's node object)."""
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = MAX_NODES + 1  # a cycle (recursive alias) counts as too large
    if isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(c, memo) for c in node.value)
    elif isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    else:
        size = 1
    memo[key] = min(size, 10 * MAX_NODES)
    return memo[key]


def load_yaml(data: str | bytes, source: str) -> Any:
    """Parse one YAML document strictly (see the module docstring)."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(
                f"expected UTF-8 text, got byte 0x{data[e.start]:02x} at offset {e.start} in {source}"
            ) from None
    loader = None
    try:
        loader = _StrictLoader(data)  # the reader rejects control characters here already
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node, {})
        if size > MAX_NODES:
            raise ConfigError(
                f"expected at most {MAX_NODES} YAML nodes with aliases expanded, got more "
                f"(nested aliases) in {source}"
            )
        return loader.construct_document(node)
    except yaml.reader.ReaderError as e:
        ch = e.character if isinstance(e.character, int) else ord(str(e.character)[:1] or "?")
        raise ConfigError(
            f"expected printable YAML text, got character #x{ch:04x} at position {e.position} in {source}"
        ) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or type(e).__name__
        raise ConfigError(f"expected valid YAML, got {problem}{where} in {source}") from None
    finally:
        if loader is not None:
            loader.dispose()
