"""YAML front matter with source lines, so every validation problem can name its line."""

from __future__ import annotations

from typing import Any

import yaml


class FrontMatterError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


class Located:
    """A parsed YAML value together with the file line where it starts."""

    __slots__ = ("value", "line")

    def __init__(self, value: Any, line: int) -> None:
        self.value = value
        self.line = line


def split_front_matter(text: str) -> tuple[str, str, int]:
    """Return (yaml_text, body, body_first_line). Raises FrontMatterError if there is none."""
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        raise FrontMatterError(1, "文件必须以 YAML 前置元数据开头（第一行为 ---）")
    for i in range(1, len(lines)):
        if lines[i].strip() == "---":
            return "".join(lines[1:i]), "".join(lines[i + 1 :]), i + 2
    raise FrontMatterError(1, "前置元数据没有结束标记 ---")


def _build(node: yaml.Node, offset: int) -> Located:
    line = node.start_mark.line + offset
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Located] = {}
        for key_node, value_node in node.value:
            key = yaml.safe_load(yaml.serialize(key_node))
            out[str(key)] = _build(value_node, offset)
        return Located(out, line)
    if isinstance(node, yaml.SequenceNode):
        return Located([_build(n, offset) for n in node.value], line)
    # Scalars: let the safe loader resolve the tag (int, bool, date, str).
    return Located(yaml.safe_load(yaml.serialize(node)), line)


def parse_located(yaml_text: str, first_line: int = 2) -> Located:
    """Parse YAML whose first line is file line `first_line` into a tree of Located values."""
    offset = first_line
    try:
        node = yaml.compose(yaml_text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = (mark.line + offset) if mark else offset
        raise FrontMatterError(line, f"YAML 语法错误：{exc.problem or exc}") from None
    if node is None:
        raise FrontMatterError(offset, "前置元数据为空")
    return _build(node, offset)
