"""Which field of a service guide a question asks about, from its wording.

A keyword fallback for callers without Rasa (the CLI, evaluation); in a conversation the Rasa intent
classifier decides. Order matters: the first aspect whose cue appears wins.
"""

from __future__ import annotations

from typing import Optional

from .normalize import normalize

_CUES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("fee", ("多少钱", "收费", "费用", "工本费", "要钱", "花钱", "免费", "交钱", "缴费多少", "价格")),
    ("time_limit", ("多久", "多长时间", "几天", "时限", "多少天", "几个工作日", "什么时候能拿", "啥时候能", "多快")),
    ("materials", ("材料", "带什么", "带啥", "准备什么", "准备啥", "需要什么", "要什么证", "证件", "资料", "手续")),
    ("location", ("在哪", "哪里办", "去哪", "地址", "地点", "窗口", "几点", "上班时间", "办公时间", "哪个部门")),
    ("online", ("网上", "线上", "手机上", "网办", "app", "小程序", "不用跑", "在线")),
    ("conditions", ("条件", "能不能办", "可以办吗", "符合", "资格", "谁可以", "能办吗")),
    ("basis", ("依据", "法律", "规定", "哪条", "条例")),
    ("procedure", ("流程", "步骤", "程序", "先去哪", "顺序")),
)
# A generic "how do I…" (怎么办) has no single aspect: the caller answers with materials and procedure.


def detect_aspect(question: str) -> Optional[str]:
    text = normalize(question)
    for aspect, cues in _CUES:
        if any(cue in text for cue in cues):
            return aspect
    return None
