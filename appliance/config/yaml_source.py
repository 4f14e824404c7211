"""YAML loading that remembers where every value came from, and ConfigError.

PyYAML's safe_load throws line numbers away; composing the node tree keeps
them. Every mapping, list and scalar becomes a Node carrying its 1-based
line, so a validation failure deep in the tree can still point at the line
an operator has to edit. Duplicate keys, which safe_load silently collapses
to the last one, are refused here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml


class ConfigError(Exception):
    """One configuration problem: where it is and what was expected.

    Attributes:
        file: the config file as the operator named it (None: not from a file).
        line: 1-based line of the offending value (None: no line applies,
            e.g. a default that conflicts with something given).
        path: YAML path such as ``storage.pools[0].size`` ("" for the file).
        message: what was wrong and what was expected.
    """

    def __init__(self, message: str, *, path: str = "", line: int | None = None,
                 file: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.line = line
        self.file = file

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = self.file + (f":{self.line}" if self.line is not None else "") + ": "
        elif self.line is not None:
            where = f"line {self.line}: "
        return where + (f"{self.path}: " if self.path else "") + self.message


@dataclass
class Node:
    """A YAML value and the line it was written on.

    Attributes:
        value: dict[str, Node] for a mapping, list[Node] for a sequence,
            otherwise the plain scalar (str, int, float, bool or None).
        line: 1-based line, or None for a value that came from a default.
        key_lines: for a mapping, the line of each key.
    """

    value: Any
    line: int | None = None
    key_lines: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_python(cls, obj: Any) -> Node:
        """Wrap a plain Python value (a schema default) as a line-less Node."""
        if isinstance(obj, dict):
            return cls({k: cls.from_python(v) for k, v in obj.items()})
        if isinstance(obj, (list, tuple)):
            return cls([cls.from_python(v) for v in obj])
        return cls(obj)

    def child(self, *steps: str | int) -> Node | None:
        """Follow keys and indexes down the tree; None when a step is absent."""
        node: Node | None = self
        for step in steps:
            if node is None:
                return None
            if isinstance(step, int) and isinstance(node.value, list):
                node = node.value[step] if step < len(node.value) else None
            elif isinstance(step, str) and isinstance(node.value, dict):
                node = node.value.get(step)
            else:
                return None
        return node

    def line_of(self, *steps: str | int) -> int | None:
        """Line of the value reached by steps, else the nearest written parent."""
        node: Node | None = self
        best = self.line
        for step in steps:
            node = node.child(step) if node is not None else None
            if node is None:
                break
            if node.line is not None:
                best = node.line
        return best


def describe(value: Any) -> str:
    """Render a YAML value for 'got ...' the way it would be written."""
    if isinstance(value, Node):
        value = value.value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


_TAB_HINT = " (YAML indents with spaces; replace the tab characters)"
_INDENT_HINT = " (check the indentation of this line and the one above)"


def _syntax_error(exc: yaml.YAMLError) -> ConfigError:
    """Turn a PyYAML error into a one-line ConfigError with its line."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = mark.line + 1 if mark is not None else None
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    text = f"YAML syntax error: {problem}"
    if context:
        text += f" ({context})"
    if "'\\t'" in text:
        text += _TAB_HINT
    elif "mapping values are not allowed" in text:
        text += _INDENT_HINT
    return ConfigError(text, line=line)


def _to_node(loader: yaml.SafeLoader, node: yaml.Node) -> Node:
    """Convert a composed PyYAML node into our Node tree (recursively)."""
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # applies `<<` merge keys
        out: dict[str, Node] = {}
        key_lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                raise ConfigError("expected a plain key, got a mapping or list as a key",
                                  line=key_line)
            key = loader.construct_object(key_node)
            if not isinstance(key, str):
                key = str(key)
            if key in out:
                raise ConfigError(f"duplicate key '{key}' (first written on line "
                                  f"{key_lines[key]})", line=key_line)
            out[key] = _to_node(loader, value_node)
            key_lines[key] = key_line
        return Node(out, line, key_lines)
    if isinstance(node, yaml.SequenceNode):
        return Node([_to_node(loader, item) for item in node.value], line)
    return Node(loader.construct_object(node), line)


def load_yaml(text: str) -> Node:
    """Parse one YAML document into a Node tree.

    Args:
        text: the document.

    Returns:
        The root Node (value None for an empty document).

    Raises:
        ConfigError: syntax error or duplicate key, with its line (no file).
    """
    try:
        # The reader checks every character as the loader is built.
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:
        line = text[:exc.position].count("\n") + 1 if isinstance(exc.position, int) else None
        char = f"U+{exc.character:04X}" if isinstance(exc.character, int) else repr(exc.character)
        raise ConfigError(f"YAML syntax error: character {char} is not allowed in YAML text",
                          line=line) from None
    try:
        root = loader.get_single_node()
        if root is None:
            return Node(None, 1)
        return _to_node(loader, root)
    except yaml.YAMLError as exc:
        raise _syntax_error(exc) from None
    finally:
        loader.dispose()
