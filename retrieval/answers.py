"""Extractive answers: the asked field of a guide, rendered from the knowledge base and nothing else."""

from __future__ import annotations

from typing import Any, Optional

from knowledge import ASPECT_LABELS, Guide
from knowledge.schema import Material


def _material_line(m: Material, situations: dict[str, str]) -> str:
    parts = [m.form]
    if m.copies:
        parts.append(f"{m.copies}份")
    if not m.required:
        parts.append("非必需")
    if m.applies_to:
        parts.append("仅限" + "、".join(situations.get(s, s) for s in m.applies_to))
    line = f"{m.name}（{'，'.join(parts)}）"
    return f"{line}：{m.note}" if m.note else line


def field_items(guide: Guide, aspect: str, situation: Optional[str] = None) -> list[str]:
    """The field as a list of lines, each taken verbatim from the guide's structured data."""
    if aspect == "materials":
        names = {s.id: s.name for s in guide.situations}
        return [_material_line(m, names) for m in guide.materials_for(situation)]
    if aspect == "procedure":
        return [f"{i}. {s.title}：{s.detail}" for i, s in enumerate(guide.procedure, start=1)]
    if aspect == "fee":
        if guide.fee.free:
            return ["不收费"]
        return [f"{f.item}：{f.amount}" + (f"（{f.note}）" if f.note else "") for f in guide.fee.items]
    if aspect == "time_limit":
        out = []
        if guide.time_limit.statutory:
            out.append(f"法定办结时限：{guide.time_limit.statutory}")
        if guide.time_limit.promised:
            out.append(f"承诺办结时限：{guide.time_limit.promised}")
        return out
    if aspect == "location":
        out = [f"{loc.name}" + (f"，{loc.address}" if loc.address else "") + (f"（{loc.hours}）" if loc.hours else "")
               for loc in guide.locations]
        return out + [f"咨询电话：{guide.phone}"]
    if aspect == "conditions":
        return list(guide.conditions)
    if aspect == "online":
        if not guide.online.available:
            return ["暂不支持网上办理"] + ([guide.online.note] if guide.online.note else [])
        return ["可网上办理" + (f"：{guide.online.url}" if guide.online.url else "")] + (
            [guide.online.note] if guide.online.note else []
        )
    if aspect == "basis":
        return [f"《{b.law}》{b.article}" + (f"：{b.note}" if b.note else "") for b in guide.basis]
    if aspect == "overview":
        lines = [f"办理部门：{guide.department}", f"到现场次数：{guide.visits}次"]
        first = guide.body.split("\n## ", 1)[0].strip()
        return lines + ([first] if first else [])
    raise ValueError(f"unknown aspect {aspect!r}")


def field_text(guide: Guide, aspect: str, situation: Optional[str] = None) -> str:
    return "\n".join(field_items(guide, aspect, situation))


def citation(guide: Guide, aspect: str) -> dict[str, str]:
    return {
        "guide": guide.id,
        "title": guide.name,
        "field": ASPECT_LABELS.get(aspect, aspect),
        "updated": guide.updated,
        "source": guide.source,
        "basis": "；".join(f"《{b.law}》{b.article}" for b in guide.basis),
    }


def guide_card(
    guide: Guide, aspect: str, situation: Optional[str] = None, confidence: Optional[float] = None
) -> dict[str, Any]:
    """The `custom` payload of DESIGN.md §4: service, aspect, items, source, confidence."""
    situation_name = next((s.name for s in guide.situations if s.id == situation), None)
    return {
        "service": guide.id,
        "service_name": guide.name,
        "aspect": aspect,
        "aspect_label": ASPECT_LABELS.get(aspect, aspect),
        "situation": situation_name,
        "items": field_items(guide, aspect, situation),
        "source": citation(guide, aspect),
        "confidence": confidence,
    }


def render_card_text(card: dict[str, Any]) -> str:
    """Plain text for channels without cards (CLI, WeChat)."""
    head = f"【{card['service_name']}】{card['aspect_label']}"
    if card.get("situation"):
        head += f"（{card['situation']}）"
    src = card["source"]
    foot = f"来源：{src['title']} · {src['field']} · 更新于 {src['updated']}"
    if src.get("basis"):
        foot += f"\n依据：{src['basis']}"
    return "\n".join([head, *card["items"], foot])
