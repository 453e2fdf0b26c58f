"""Load and check service guides: one Markdown file per service with YAML front matter."""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Optional, TypeVar

from ._frontmatter import FrontMatterError, Located, parse_located, split_front_matter
from .schema import (
    MATERIAL_FORMS,
    Basis,
    FaqEntry,
    Fee,
    FeeItem,
    Guide,
    Location,
    Material,
    Online,
    Problem,
    Situation,
    Step,
    TimeLimit,
)

_ID_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_ARTICLE_RE = re.compile(r"^第[零一二三四五六七八九十百千]+条(?:之[一二三四五六七八九十]+)?$")
_FAQ_HEADING = "## 常见问题"

T = TypeVar("T")


class _Checker:
    """Collects problems while reading one guide; every read names the field it is about."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.problems: list[Problem] = []

    def fail(self, line: int, fieldname: str, message: str) -> None:
        self.problems.append(Problem(self.path, line, fieldname, message))

    def get(self, mapping: Located, key: str, fieldname: str, required: bool = True) -> Optional[Located]:
        value = mapping.value.get(key) if isinstance(mapping.value, dict) else None
        if value is None or value.value is None or value.value == "":
            if required:
                self.fail(mapping.line, fieldname, "缺少必填字段")
            return None
        return value

    def text(self, mapping: Located, key: str, fieldname: str, required: bool = True) -> str:
        value = self.get(mapping, key, fieldname, required)
        if value is None:
            return ""
        if isinstance(value.value, (dict, list)):
            self.fail(value.line, fieldname, "应为文本")
            return ""
        if isinstance(value.value, bool):
            self.fail(value.line, fieldname, "应为文本，不是布尔值（需要时请加引号）")
            return ""
        return str(value.value).strip()

    def boolean(self, mapping: Located, key: str, fieldname: str) -> bool:
        value = self.get(mapping, key, fieldname)
        if value is None:
            return False
        if not isinstance(value.value, bool):
            self.fail(value.line, fieldname, "应为 true 或 false")
            return False
        return value.value

    def integer(self, mapping: Located, key: str, fieldname: str, lo: int, hi: int) -> int:
        value = self.get(mapping, key, fieldname)
        if value is None:
            return 0
        if isinstance(value.value, bool) or not isinstance(value.value, int):
            self.fail(value.line, fieldname, "应为整数")
            return 0
        if not lo <= value.value <= hi:
            self.fail(value.line, fieldname, f"应在 {lo} 到 {hi} 之间")
        return value.value

    def items(
        self, mapping: Located, key: str, fieldname: str, read: Callable[[Located, str], T], required: bool = True
    ) -> tuple[T, ...]:
        value = self.get(mapping, key, fieldname, required)
        if value is None:
            return ()
        if not isinstance(value.value, list):
            self.fail(value.line, fieldname, "应为列表")
            return ()
        if required and not value.value:
            self.fail(value.line, fieldname, "列表不能为空")
        return tuple(read(item, f"{fieldname}[{i}]") for i, item in enumerate(value.value))

    def mapping(self, value: Located, fieldname: str) -> Located:
        if not isinstance(value.value, dict):
            self.fail(value.line, fieldname, "应为键值对象")
            return Located({}, value.line)
        return value

    def unknown_keys(self, mapping: Located, allowed: set[str], prefix: str) -> None:
        if not isinstance(mapping.value, dict):
            return
        for key, value in mapping.value.items():
            if key not in allowed:
                self.fail(value.line, f"{prefix}{key}", f"未知字段（可用：{', '.join(sorted(allowed))}）")


_TOP_KEYS = {
    "id", "name", "aliases", "department", "region", "category", "basis", "conditions", "situations",
    "materials", "procedure", "time_limit", "fee", "locations", "phone", "online", "visits", "updated", "source",
}


def parse_guide_text(text: str, path: str) -> tuple[Optional[Guide], list[Problem]]:
    """Parse one guide; returns the guide (None if unusable) and every problem found."""
    check = _Checker(path)
    try:
        yaml_text, body, _ = split_front_matter(text)
        root = parse_located(yaml_text, first_line=2)
    except FrontMatterError as exc:
        return None, [Problem(path, exc.line, "", exc.message)]
    root = check.mapping(root, "(front matter)")
    check.unknown_keys(root, _TOP_KEYS, "")

    gid = check.text(root, "id", "id")
    if gid and not _ID_RE.match(gid):
        check.fail(root.value["id"].line, "id", "只能使用小写字母、数字和连字符，例如 id-card-reissue")
    if gid and Path(path).stem != gid:
        check.fail(root.value["id"].line, "id", f"应与文件名一致（{Path(path).stem}）")

    def text_list(key: str) -> tuple[str, ...]:
        def read(item: Located, name: str) -> str:
            if not isinstance(item.value, str) or not item.value.strip():
                check.fail(item.line, name, "应为非空文本")
                return ""
            return item.value.strip()

        return check.items(root, key, key, read)

    def read_basis(item: Located, name: str) -> Basis:
        m = check.mapping(item, name)
        check.unknown_keys(m, {"law", "article", "note"}, f"{name}.")
        article = check.text(m, "article", f"{name}.article")
        if article and not _ARTICLE_RE.match(article):
            check.fail(m.value["article"].line, f"{name}.article", "应写成“第十一条”的形式")
        return Basis(check.text(m, "law", f"{name}.law"), article, check.text(m, "note", f"{name}.note", False))

    def read_situation(item: Located, name: str) -> Situation:
        m = check.mapping(item, name)
        check.unknown_keys(m, {"id", "name"}, f"{name}.")
        return Situation(check.text(m, "id", f"{name}.id"), check.text(m, "name", f"{name}.name"))

    def read_material(item: Located, name: str) -> Material:
        m = check.mapping(item, name)
        check.unknown_keys(m, {"name", "form", "copies", "required", "note", "applies_to"}, f"{name}.")
        form = check.text(m, "form", f"{name}.form")
        if form and form not in MATERIAL_FORMS:
            check.fail(m.value["form"].line, f"{name}.form", f"应为 {'、'.join(MATERIAL_FORMS)} 之一")
        applies: tuple[str, ...] = ()
        raw = m.value.get("applies_to")
        if raw is not None:
            if not isinstance(raw.value, list) or not all(isinstance(x.value, str) for x in raw.value):
                check.fail(raw.line, f"{name}.applies_to", "应为情形 id 的列表")
            else:
                applies = tuple(x.value for x in raw.value)
        return Material(
            name=check.text(m, "name", f"{name}.name"),
            form=form,
            copies=check.integer(m, "copies", f"{name}.copies", 0, 20),
            required=check.boolean(m, "required", f"{name}.required"),
            note=check.text(m, "note", f"{name}.note", False),
            applies_to=applies,
        )

    def read_step(item: Located, name: str) -> Step:
        m = check.mapping(item, name)
        check.unknown_keys(m, {"title", "detail"}, f"{name}.")
        return Step(check.text(m, "title", f"{name}.title"), check.text(m, "detail", f"{name}.detail"))

    def read_fee_item(item: Located, name: str) -> FeeItem:
        m = check.mapping(item, name)
        check.unknown_keys(m, {"item", "amount", "note"}, f"{name}.")
        return FeeItem(
            check.text(m, "item", f"{name}.item"),
            check.text(m, "amount", f"{name}.amount"),
            check.text(m, "note", f"{name}.note", False),
        )

    def read_location(item: Located, name: str) -> Location:
        m = check.mapping(item, name)
        check.unknown_keys(m, {"name", "hours", "address"}, f"{name}.")
        return Location(
            check.text(m, "name", f"{name}.name"),
            check.text(m, "hours", f"{name}.hours", False),
            check.text(m, "address", f"{name}.address", False),
        )

    situations = check.items(root, "situations", "situations", read_situation, required=False)
    materials = check.items(root, "materials", "materials", read_material)
    known = {s.id for s in situations}
    raw_materials = root.value.get("materials")
    for i, mat in enumerate(materials):
        for sid in mat.applies_to:
            if sid not in known:
                line = raw_materials.value[i].line if raw_materials else 0
                check.fail(line, f"materials[{i}].applies_to", f"情形“{sid}”未在 situations 中定义")

    time_limit = TimeLimit()
    tl = check.get(root, "time_limit", "time_limit")
    if tl is not None:
        tl = check.mapping(tl, "time_limit")
        check.unknown_keys(tl, {"statutory", "promised"}, "time_limit.")
        time_limit = TimeLimit(
            check.text(tl, "statutory", "time_limit.statutory", False),
            check.text(tl, "promised", "time_limit.promised", False),
        )
        if not time_limit.statutory and not time_limit.promised:
            check.fail(tl.line, "time_limit", "至少填写法定时限（statutory）或承诺时限（promised）之一")

    fee = Fee(free=False)
    fv = check.get(root, "fee", "fee")
    if fv is not None:
        fv = check.mapping(fv, "fee")
        check.unknown_keys(fv, {"free", "items"}, "fee.")
        free = check.boolean(fv, "free", "fee.free")
        items = check.items(fv, "items", "fee.items", read_fee_item, required=not free)
        if free and items:
            check.fail(fv.line, "fee.items", "不收费（free: true）时不应列出收费项目")
        fee = Fee(free, items)

    online = Online(False)
    ov = check.get(root, "online", "online")
    if ov is not None:
        ov = check.mapping(ov, "online")
        check.unknown_keys(ov, {"available", "url", "note"}, "online.")
        url = check.text(ov, "url", "online.url", False)
        if url and not url.startswith(("https://", "http://")):
            check.fail(ov.value["url"].line, "online.url", "应为 http(s) 网址")
        online = Online(check.boolean(ov, "available", "online.available"), url, check.text(ov, "note", "online.note", False))

    updated = ""
    uv = check.get(root, "updated", "updated")
    if uv is not None:
        if isinstance(uv.value, _dt.date):
            updated = uv.value.isoformat()
        else:
            try:
                updated = _dt.date.fromisoformat(str(uv.value)).isoformat()
            except ValueError:
                check.fail(uv.line, "updated", "应为日期，格式 YYYY-MM-DD")

    guide = Guide(
        id=gid,
        name=check.text(root, "name", "name"),
        aliases=text_list("aliases"),
        department=check.text(root, "department", "department"),
        region=check.text(root, "region", "region"),
        category=check.text(root, "category", "category"),
        basis=check.items(root, "basis", "basis", read_basis),
        conditions=text_list("conditions"),
        situations=situations,
        materials=materials,
        procedure=check.items(root, "procedure", "procedure", read_step),
        time_limit=time_limit,
        fee=fee,
        locations=check.items(root, "locations", "locations", read_location),
        phone=check.text(root, "phone", "phone"),
        online=online,
        visits=check.integer(root, "visits", "visits", 0, 5),
        updated=updated,
        source=check.text(root, "source", "source"),
        body=body.strip(),
        path=path,
    )
    guide = _with_body_faq(guide, body)
    return guide, check.problems


def _with_body_faq(guide: Guide, body: str) -> Guide:
    """The body's 常见问题 section (### question, then answer paragraphs) becomes FAQ linked to the guide."""
    if _FAQ_HEADING not in body:
        return guide
    section = body.split(_FAQ_HEADING, 1)[1]
    section = re.split(r"\n## ", section, maxsplit=1)[0]
    entries = []
    for n, block in enumerate(re.split(r"^### ", section, flags=re.M)[1:], start=1):
        question, _, answer = block.partition("\n")
        if question.strip() and answer.strip():
            entries.append(
                FaqEntry(f"{guide.id}#faq-{n}", question.strip(), answer.strip(), guide.id, guide.department, guide.path)
            )
    return replace(guide, faq=tuple(entries))


def load_guide(path: Path) -> tuple[Optional[Guide], list[Problem]]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None, [Problem(str(path), 0, "", "文件不是 UTF-8 编码")]
    return parse_guide_text(text, str(path))
