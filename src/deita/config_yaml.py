"""YAML files (configs, prompt overrides) read with limits: size, aliases, nesting and expanded size.

PyYAML's safe loader shares an aliased node instead of copying it, so a few hundred bytes of nested
aliases (an "alias bomb") load in no time as a value that expands to billions of items the first time
anything walks it: a type check, a `repr()` in an error, a saved config. The loader here counts alias
uses and nesting depth while it composes, then measures the document as it would expand, and refuses it
with one line before any of that happens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from deita.errors import ConfigError, DeitaError

MAX_BYTES = 1_000_000
MAX_ALIASES = 1_000
MAX_DEPTH = 64
MAX_VALUES = 100_000
"""A config or prompt file expands to a few hundred values; these bounds leave room and stop a bomb."""


class _TooBig(Exception):
    """A limit of the bounded loader, with the line it was met on."""

    def __init__(self, problem: str, node: yaml.Node | None = None) -> None:
        self.problem, self.line = problem, node.start_mark.line + 1 if node is not None else None


class BoundedLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses too many aliases, too deep nesting and documents that expand past
    `MAX_VALUES` values (or refer to themselves)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.alias_uses = 0
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        if self.check_event(yaml.AliasEvent):
            self.alias_uses += 1
            if self.alias_uses > MAX_ALIASES:
                raise _TooBig(f"more than {MAX_ALIASES:,} alias uses (*name)")
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise _TooBig(f"nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def compose_document(self) -> yaml.Node:
        node = super().compose_document()
        expanded_size(node)
        return node


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def expanded_size(root: yaml.Node) -> int:
    """How many values `root` holds once every alias is expanded, and how deep; refuses more than
    `MAX_VALUES` values, more than `MAX_DEPTH` levels, or a node that contains itself. Each node is
    visited once (iteratively: no recursion limit to hit), so a bomb costs its size in the file."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            open_nodes.discard(key)
            children = _children(node)
            size[key] = 1 + sum(size[id(child)] for child in children)
            depth[key] = 1 + max((depth[id(child)] for child in children), default=0)
            if size[key] > MAX_VALUES:
                raise _TooBig(f"expands to more than {MAX_VALUES:,} values through its aliases (an alias bomb?)",
                              node)
            if depth[key] > MAX_DEPTH:
                raise _TooBig(f"nested more than {MAX_DEPTH} levels deep once its aliases are expanded", node)
            continue
        if key in size:
            continue
        if key in open_nodes:
            raise _TooBig("a value contains itself (a recursive alias)", node)
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((child, False) for child in _children(node) if id(child) not in size)
    return size[id(root)]


def parse_yaml(text: str, source: str) -> Any:
    """The value of one YAML document, within the limits; a ConfigError naming `source` and the line."""
    if len(text) > MAX_BYTES:
        raise ConfigError(f"larger than {MAX_BYTES:,} bytes; a config file is a few kilobytes", where=source)
    loader = BoundedLoader(text)
    try:
        return loader.get_single_data()
    except _TooBig as err:
        where = f"{source}, line {err.line}" if err.line else source
        raise ConfigError(f"refused: {err.problem}", where=where) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{source}, line {mark.line + 1}" if mark is not None else source
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"not valid YAML ({' '.join(str(problem).split())[:200]})", where=where) from None
    except (ValueError, RecursionError) as err:  # e.g. an integer of more than 4,300 digits
        raise ConfigError(f"not valid YAML ({str(err)[:200]})", where=source) from None
    finally:
        loader.dispose()


def read_yaml(path: str | Path, what: str = "config file") -> Any:
    """The value of the YAML file `path`, read with the limits (`what` names the file in errors)."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            data = file.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise DeitaError(f"{path}: {what} not found") from None
    except OSError as err:
        raise DeitaError(f"{path}: cannot read the {what} ({err.strerror or err})") from None
    if len(data) > MAX_BYTES:
        raise ConfigError(f"larger than {MAX_BYTES:,} bytes; a {what} is a few kilobytes", where=str(path))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DeitaError(f"{path}: cannot read the {what} (not UTF-8: {err.reason} at byte {err.start})") from None
    return parse_yaml(text, str(path))
