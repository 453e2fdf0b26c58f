"""Generate the Rasa inputs that derive from the knowledge base (git-ignored, under bot/generated/).

    .venv-rasa/bin/python -m bot.generate      (or .venv/bin/python; needs only `knowledge` and `nlu`)

Writes, each only when its content changed (so `bot/train.py` can skip `rasa train` when nothing moved):
- generated/jieba/dictionary.txt  the government dictionary for JiebaTokenizer. Rasa's `dictionary_path` is a
                                  *folder*: it loads every file in it (rasa/nlu/tokenizers/jieba_tokenizer.py).
- generated/lookups.yml           lookup tables `service` (guide names, their parts, generic service nouns) and
                                  `region`, plus region synonyms (北京市 → 北京).
- generated/service_terms.json    term → guide ids (names, aliases, generic nouns); `ServiceLinker` reads it at
                                  training time and keeps it in the model.
- generated/nlu_templated.yml     templated examples from names and aliases. They supplement the hand-written
                                  examples in bot/data/nlu.yml, never replace them.
"""

from __future__ import annotations

import json
import os
import random
import re
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Optional

from knowledge import BUNDLED_CORPUS, load_corpus
from knowledge.schema import Guide
from nlu import dictionary_terms, dictionary_text, normalize

BOT = Path(__file__).resolve().parent
GENERATED = BOT / "generated"
DICTIONARY_DIR = GENERATED / "jieba"
DICTIONARY = DICTIONARY_DIR / "dictionary.txt"
LOOKUPS = GENERATED / "lookups.yml"
SERVICE_TERMS = GENERATED / "service_terms.json"
TEMPLATED = GENERATED / "nlu_templated.yml"

# Short nouns citizens use for a service. Each is linked to every guide whose name or alias contains it, so
# 「身份证」 stays ambiguous (four guides) while 「护照」 points at one. Only terms that hit a guide are kept.
GENERIC_TERMS = (
    "身份证", "临时身份证", "户口", "户籍", "落户", "上户口", "报户口", "迁户口", "护照", "港澳通行证",
    "台湾通行证", "通行证", "签注", "居住证", "暂住证", "驾照", "驾驶证", "车牌", "上牌", "牌照", "结婚证", "离婚证",
    "离婚", "出生证", "出生证明", "出生医学证明", "社保卡", "社会保障卡", "社保", "医保", "居民医保",
    "新农合", "养老保险", "养老金", "退休金", "公积金", "住房公积金", "公积金贷款", "营业执照", "个体户",
    "个体工商户", "低保", "低保户", "最低生活保障", "残疾证", "残疾人证", "老年证", "老年优待证", "敬老卡", "失业金",
    "失业保险金", "失业登记", "就业创业证", "生育津贴", "工伤", "工伤认定", "法律援助", "公证", "公证书",
    "丧葬费", "丧葬补助金", "抚恤金", "死亡证明", "异地就医", "异地就医备案", "报销", "医疗费用", "个税", "个人所得税",
    "汇算", "不动产", "房产", "过户", "抵押", "抵押登记", "无房证明", "房产证明",
)

_GENERIC = frozenset(normalize(t) for t in GENERIC_TERMS)

# Where a citizen may be: provinces and the larger cities, with their long forms as synonyms.
PROVINCES = (
    "北京", "天津", "上海", "重庆", "河北", "山西", "辽宁", "吉林", "黑龙江", "江苏", "浙江", "安徽", "福建", "江西",
    "山东", "河南", "湖北", "湖南", "广东", "海南", "四川", "贵州", "云南", "陕西", "甘肃", "青海",
    "内蒙古", "广西", "西藏", "宁夏", "新疆",
)  # 香港/澳门/台湾 are destinations of permits here, not where the citizen handles a matter
MUNICIPALITIES = ("北京", "天津", "上海", "重庆")
AUTONOMOUS = {"内蒙古": "内蒙古自治区", "广西": "广西壮族自治区", "西藏": "西藏自治区", "宁夏": "宁夏回族自治区",
              "新疆": "新疆维吾尔自治区"}
CITIES = (
    "广州", "深圳", "杭州", "南京", "苏州", "成都", "武汉", "西安", "郑州", "长沙", "济南", "青岛", "沈阳", "大连",
    "哈尔滨", "长春", "石家庄", "太原", "合肥", "福州", "厦门", "南昌", "南宁", "海口", "贵阳", "昆明", "兰州",
    "西宁", "银川", "乌鲁木齐", "拉萨", "呼和浩特", "宁波", "无锡", "东莞", "佛山", "珠海", "温州",
)

# Templates for the generated supplement: {s} is a guide name (or part); entities are annotated afterwards
# exactly where the lookup tables match.
_ASPECT_TEMPLATES: dict[str, tuple[str, ...]] = {
    "ask_materials": ("办{s}要带什么材料", "{s}需要准备哪些材料", "{s}要带啥"),
    "ask_procedure": ("{s}的办理流程是什么", "{s}怎么个流程", "{s}分几步办"),
    "ask_fee": ("{s}要多少钱", "{s}收费吗", "办{s}交多少费用"),
    "ask_time_limit": ("{s}要多久才能办好", "{s}几个工作日", "{s}多长时间能拿到"),
    "ask_location": ("{s}在哪里办", "{s}去哪个窗口办", "{s}的办理地点在哪"),
    "ask_conditions": ("什么条件可以办{s}", "{s}的受理条件是什么", "我能不能办{s}"),
    "ask_online": ("{s}能在网上办吗", "{s}可以线上办理吗", "{s}手机上能办不"),
    "ask_basis": ("{s}的法律依据是什么", "{s}是按哪个规定办的", "{s}依据哪条法规"),
    "ask_policy": ("{s}有什么最新政策", "{s}的政策是怎么规定的", "关于{s}的政策文件"),
}
_PER_TEMPLATE = 4  # guides per template: ~12 generated examples per aspect intent


_MARKUP = re.compile(r"\[([^\]]+)\]\([^)]*\)|\[([^\]]+)\]\{[^}]*\}")


def _plain(example: str) -> str:
    """The text of a training example without its entity markup."""
    return _MARKUP.sub(lambda m: m.group(1) or m.group(2), example)


def _split_name(name: str) -> list[str]:
    """「就业失业登记（就业创业证申领）」 → the name and its parts, normalised."""
    text = normalize(name)
    parts = [text]
    for sep in "（）()、":
        text = text.replace(sep, "|")
    parts += [p.removeprefix("含") for p in text.split("|")]
    # a part must name something: 「社保卡」 yes, 「申领」 or 「火化」 alone no (unless a generic service noun)
    return list(dict.fromkeys(p for p in parts if len(p) >= 3 or p in _GENERIC))


def _mentions(name: str) -> list[str]:
    """Forms of a guide name a citizen could type: without brackets."""
    return [p for p in _split_name(name) if not any(c in p for c in "()")]


def service_terms(guides: Iterable[Guide]) -> dict[str, list[str]]:
    """Every surface form a citizen may use for a service → the guide ids it may mean (sorted)."""
    guides = list(guides)
    owners: dict[str, set[str]] = {}
    surfaces: dict[str, list[str]] = {}
    for g in guides:
        forms = _split_name(g.name) + [normalize(a) for a in g.aliases]
        surfaces[g.id] = forms
        for form in forms:
            owners.setdefault(form, set()).add(g.id)
    for term in GENERIC_TERMS:
        t = normalize(term)
        hits = {gid for gid, forms in surfaces.items() if any(t in f for f in forms)}
        if hits:
            owners.setdefault(t, set()).update(hits)
    return {term: sorted(ids) for term, ids in sorted(owners.items())}


def weak_terms(guides: Iterable[Guide], terms: dict[str, list[str]]) -> list[str]:
    """Terms that are also (part of) a material name: 「结婚证」 in 「上户口要带结婚证吗」 names a document to bring,
    not the service asked about, so ServiceLinker prefers any other match over these."""
    materials = {normalize(m.name) for g in guides for m in g.materials}
    return sorted(t for t in terms if any(t in m for m in materials))


def service_mentions(guides: Iterable[Guide], terms: dict[str, list[str]]) -> list[str]:
    """The `service` lookup table: names without brackets, their parts, generic nouns; longest first."""
    mentions = {p for g in guides for p in _mentions(g.name)}
    mentions |= {t for t in _GENERIC if t in terms}
    return sorted(mentions, key=lambda m: (-len(m), m))


def annotate(text: str, patterns: dict[str, re.Pattern[str]]) -> str:
    """Entity markup exactly where Rasa's RegexEntityExtractor (longest-first lookup) will find entities."""
    spans = sorted((m.start(), m.end(), name) for name, p in patterns.items() for m in p.finditer(text))
    out, pos = [], 0
    for start, end, name in spans:
        if start < pos:
            continue  # overlapping matches of two tables: keep the first
        out += [text[pos:start], f"[{text[start:end]}]({name})"]
        pos = end
    return "".join(out) + text[pos:]


def lookup_patterns(guides: list[Guide], terms: dict[str, list[str]]) -> dict[str, re.Pattern[str]]:
    regions = sorted({f for k, v in _regions().items() for f in [k, *v]}, key=lambda m: (-len(m), m))
    return {"service": re.compile("|".join(map(re.escape, service_mentions(guides, terms))), re.I),
            "region": re.compile("|".join(map(re.escape, regions)), re.I)}


def lookups_yaml(guides: list[Guide], terms: dict[str, list[str]]) -> str:
    # Mentions for the `service` lookup: guide names and their parts and the generic nouns -- noun phrases, so
    # that the extracted span is the service itself. Aliases (often whole phrases: 「身份证丢了」) are used by
    # ServiceLinker on the whole text instead. Longest first: Python's regex alternation takes the first match.
    mentions_sorted = service_mentions(guides, terms)
    regions = _regions()
    region_forms = sorted({f for k, v in regions.items() for f in [k, *v]}, key=lambda m: (-len(m), m))
    lines = ['version: "3.1"', "# generated by bot/generate.py from the knowledge base -- do not edit", "nlu:",
             "- lookup: service", "  examples: |"]
    lines += [f"    - {m}" for m in mentions_sorted]
    lines += ["- lookup: region", "  examples: |"]
    lines += [f"    - {r}" for r in region_forms]
    for canonical, longs in regions.items():
        if longs:
            lines += [f"- synonym: {canonical}", "  examples: |"] + [f"    - {x}" for x in longs]
    return "\n".join(lines) + "\n"


def _regions() -> dict[str, list[str]]:
    """Canonical region → its long forms (synonyms)."""
    regions: dict[str, list[str]] = {}
    for p in PROVINCES:
        if p in MUNICIPALITIES:
            regions[p] = [p + "市"]
        elif p in AUTONOMOUS:
            regions[p] = [AUTONOMOUS[p]]
        else:
            regions[p] = [p + "省"]
    for c in CITIES:
        regions.setdefault(c, [c + "市"])
    return regions


def templated_yaml(guides: list[Guide], hand_examples: set[str], patterns: dict[str, re.Pattern[str]]) -> str:
    """A deterministic supplement: aspect questions over guide names, bare aliases as ask_service."""
    rng = random.Random(20260601)
    by_intent: dict[str, list[str]] = {}
    seen = set(hand_examples)

    def add(intent: str, example: str) -> None:
        if example in seen:
            return
        seen.add(example)
        by_intent.setdefault(intent, []).append(annotate(example, patterns))

    names = sorted(guides, key=lambda g: g.id)
    for intent, templates in _ASPECT_TEMPLATES.items():
        for template in templates:
            for g in rng.sample(names, _PER_TEMPLATE):
                mention = rng.choice(_mentions(g.name))
                add(intent, template.format(s=mention))
    # Bare service mentions: 2 aliases per guide.
    for g in names:
        for alias in rng.sample(list(g.aliases), min(2, len(g.aliases))):
            add("ask_service", normalize(alias))
    lines = ['version: "3.1"', "# generated by bot/generate.py from the knowledge base -- do not edit", "nlu:"]
    for intent, examples in by_intent.items():
        lines += [f"- intent: {intent}", "  examples: |"] + [f"    - {e}" for e in examples]
    return "\n".join(lines) + "\n"


def hand_examples(path: Path) -> set[str]:
    """Plain text of the hand-written examples (entity markup removed), to avoid generating duplicates."""
    if not path.exists():
        return set()
    out = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        s = line.strip()
        if s.startswith("- ") and not s.startswith("- intent") and not s.startswith("- lookup"):
            out.add(_plain(s[2:].strip()))
    return out


def write_if_changed(path: Path, content: str) -> bool:
    """Atomically replace `path` with `content` unless it already holds exactly that. True when written."""
    if path.exists() and path.read_text(encoding="utf-8") == content:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(content)
    os.replace(tmp, path)
    return True


def generate(corpus_root: Path = BUNDLED_CORPUS, out: Optional[Path] = None) -> dict[str, bool]:
    """Write every generated file; returns {file name: written?}."""
    corpus, problems = load_corpus(corpus_root)
    if not corpus.guides:
        raise SystemExit("no guides in the knowledge base:\n" + "\n".join(map(str, problems[:20])))
    for problem in problems[:20]:  # `govbot kb validate` owns these; generate from the guides that loaded
        print(f"warning: {problem}", file=sys.stderr)
    guides = sorted(corpus.guides.values(), key=lambda g: g.id)
    base = out or GENERATED
    terms = service_terms(guides)
    words = [g.name for g in guides] + [normalize(t) for t in GENERIC_TERMS] + [g.department for g in guides]
    words += [m.name for g in guides for m in g.materials]
    dictionary = dictionary_text(dictionary_terms(words))
    files = {
        base / "jieba" / "dictionary.txt": dictionary,
        base / "lookups.yml": lookups_yaml(guides, terms),
        base / "service_terms.json": json.dumps(
            {"version": 1, "terms": terms, "weak": weak_terms(guides, terms),
             "names": {g.id: g.name for g in guides}},
            ensure_ascii=False, indent=1, sort_keys=True) + "\n",
        base / "nlu_templated.yml": templated_yaml(guides, hand_examples(BOT / "data" / "nlu.yml"),
                                                lookup_patterns(guides, terms)),
    }
    return {str(p.relative_to(base)): write_if_changed(p, c) for p, c in files.items()}


def main(argv: list[str]) -> int:
    written = generate()
    for name, changed in written.items():
        print(f"{'wrote    ' if changed else 'unchanged'} bot/generated/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
