"""The service-guide contract (办事指南 elements), as plain dataclasses.

Plain dataclasses, not pydantic: this package runs inside Rasa (pydantic 1) and in the app (pydantic 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

# What a citizen may be asked to bring, and in which form.
MATERIAL_FORMS = ("原件", "复印件", "原件及复印件", "电子证照", "现场采集", "现场填写")

# The fields of a guide a citizen can ask about (the "aspect" of a question).
ASPECTS = (
    "materials",
    "procedure",
    "fee",
    "time_limit",
    "location",
    "conditions",
    "online",
    "basis",
    "overview",
)

ASPECT_LABELS = {
    "materials": "申请材料",
    "procedure": "办理流程",
    "fee": "收费标准",
    "time_limit": "办理时限",
    "location": "办理地点和时间",
    "conditions": "受理条件",
    "online": "网上办理",
    "basis": "设定依据",
    "overview": "事项概述",
    "faq": "常见问题",
    "policy": "政策文件",
}


@dataclass(frozen=True)
class Basis:
    law: str
    article: str
    note: str = ""


@dataclass(frozen=True)
class Situation:
    id: str
    name: str


@dataclass(frozen=True)
class Material:
    name: str
    form: str
    copies: int
    required: bool
    note: str = ""
    applies_to: tuple[str, ...] = ()  # empty: every situation


@dataclass(frozen=True)
class Step:
    title: str
    detail: str


@dataclass(frozen=True)
class TimeLimit:
    statutory: str = ""
    promised: str = ""


@dataclass(frozen=True)
class FeeItem:
    item: str
    amount: str
    note: str = ""


@dataclass(frozen=True)
class Fee:
    free: bool
    items: tuple[FeeItem, ...] = ()


@dataclass(frozen=True)
class Location:
    name: str
    hours: str = ""
    address: str = ""


@dataclass(frozen=True)
class Online:
    available: bool
    url: str = ""
    note: str = ""


@dataclass(frozen=True)
class FaqEntry:
    id: str
    question: str
    answer: str
    service: Optional[str] = None  # guide id this answer belongs to, if any
    department: str = ""
    source: str = ""  # file (and line) it came from


@dataclass(frozen=True)
class Guide:
    id: str
    name: str
    aliases: tuple[str, ...]
    department: str
    region: str
    category: str
    basis: tuple[Basis, ...]
    conditions: tuple[str, ...]
    situations: tuple[Situation, ...]
    materials: tuple[Material, ...]
    procedure: tuple[Step, ...]
    time_limit: TimeLimit
    fee: Fee
    locations: tuple[Location, ...]
    phone: str
    online: Online
    visits: int
    updated: str
    source: str
    body: str = ""
    path: str = ""
    faq: tuple[FaqEntry, ...] = field(default=())

    def materials_for(self, situation: Optional[str]) -> tuple[Material, ...]:
        """The checklist for one 情形 (all materials when no situation is given)."""
        if not situation:
            return self.materials
        return tuple(m for m in self.materials if not m.applies_to or situation in m.applies_to)


@dataclass(frozen=True)
class PolicySection:
    id: str
    doc_id: str
    title: str  # document title
    heading: str  # chapter / section heading, article number
    text: str
    date: str = ""
    source: str = ""


@dataclass(frozen=True)
class Problem:
    """One validation problem, located precisely enough for a person to fix it."""

    path: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
