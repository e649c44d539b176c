"""YAML read safely: the one reader for every YAML file qaflow reads (params.yaml, dvc.lock, an MLmodel file).

On top of PyYAML's safe loader (plain data, no Python objects), a document is refused when it
- repeats a key in one mapping (YAML forbids it; PyYAML would keep the last value, DVC refuses the file),
- expands, through anchors and aliases, to more than `MAX_NODES` nodes (a few hundred bytes of nested aliases
  can stand for billions of values), or nests deeper than `MAX_DEPTH`.
A syntax error names the file, line and column and what is wrong, never the line's text (it may hold a secret).

Imports nothing else of qaflow.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

MAX_NODES = 100_000  # params.yaml has a few hundred; an alias bomb has billions
MAX_DEPTH = 64


class YAMLInputError(ValueError):
    """A YAML document qaflow will not read: the message names the file, line and column, not the content."""


def _at(node_or_mark: Any) -> str:
    mark = getattr(node_or_mark, "start_mark", node_or_mark)
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (merge keys `<<` excepted: they are overridden by design)."""

    source = "<yaml>"

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: the base class reports it
                break
            if duplicate:
                raise YAMLInputError(f"{self.source}: duplicate key {key!r}{_at(key_node)} (YAML keys are unique)")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: Node, memo: dict[int, int], depth: int, source: str) -> int:
    """Nodes of the document once every alias is expanded (memoised: an alias points at its anchor's node)."""
    if depth > MAX_DEPTH:
        raise YAMLInputError(f"{source}: nested deeper than {MAX_DEPTH} levels{_at(node)}")
    known = memo.get(id(node))
    if known is not None:
        return known
    size = 1
    if isinstance(node, SequenceNode):
        size += sum(_expanded_size(child, memo, depth + 1, source) for child in node.value)
    elif isinstance(node, MappingNode):
        for key, value in node.value:
            size += _expanded_size(key, memo, depth + 1, source) + _expanded_size(value, memo, depth + 1, source)
    if size > MAX_NODES:
        raise YAMLInputError(f"{source}: expands to more than {MAX_NODES:,} values{_at(node)} (anchors and aliases)")
    memo[id(node)] = size
    return size


def load_yaml(text: str, source: str) -> Any:
    """The one document in `text` (from `source`, named in errors) as plain data; `YAMLInputError` if refused."""
    loader = _StrictLoader(text)
    loader.source = source
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, {}, 0, source)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "malformed"
        if exc.problem and exc.context and exc.context_mark is not None:  # e.g. where an unclosed quote began
            problem += f" ({exc.context}{_at(exc.context_mark).replace(' at ', ' from ', 1)})"
        raise YAMLInputError(f"{source}: not valid YAML{_at(mark)}: {problem}") from None
    except yaml.YAMLError as exc:  # unmarked: no position to give
        raise YAMLInputError(f"{source}: not valid YAML ({type(exc).__name__})") from None
    except RecursionError:
        raise YAMLInputError(f"{source}: not valid YAML: nested too deeply") from None
    finally:
        loader.dispose()


def read_yaml(path: str | Path) -> Any:
    """`load_yaml` of a UTF-8 file."""
    return load_yaml(Path(path).read_text(encoding="utf-8"), str(path))
