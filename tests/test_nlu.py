"""Chinese text: normalisation, the government dictionary, and both runtimes."""

from __future__ import annotations

import subprocess
from pathlib import Path

from knowledge import BUNDLED_CORPUS, load_corpus
from nlu import detect_aspect, dictionary_terms, make_tokenizer, normalize, normalize_aligned, write_dictionary

from .conftest import REPO


def test_traditional_full_width_and_spacing() -> None:
    assert normalize("身份證丟了怎麼補辦？") == normalize("身份证丢了怎么补办?")
    assert normalize("ＡＢＣ　１２３\n\t公積金") == "abc 123 公积金"
    text = "護照過期了怎麼辦，需要帶戶口簿嗎？"
    aligned = normalize_aligned(text)
    assert len(aligned) == len(text) and aligned.startswith("护照过期了怎么办")


def test_government_dictionary_keeps_terms_whole(tmp_path: Path) -> None:
    corpus, _ = load_corpus(BUNDLED_CORPUS)
    words = [m.name for g in corpus.guides.values() for m in g.materials] + [g.name for g in corpus.guides.values()]
    terms = dictionary_terms(words)
    path = write_dictionary(terms, tmp_path / "dict.txt")
    plain = make_tokenizer(None, tmp_path / "cache")
    gov = make_tokenizer(path, tmp_path / "cache")
    sentence = normalize("补领要带居民户口簿和符合标准的本人相片")
    assert "居民户口簿" not in plain.lcut(sentence)
    assert "居民户口簿" in gov.lcut(sentence)


def test_aspect_cues() -> None:
    assert detect_aspect("办护照要带什么材料") == "materials"
    assert detect_aspect("補辦身份證多少錢") == "fee"
    assert detect_aspect("公积金租房提取要多久") == "time_limit"
    assert detect_aspect("身份证丢了怎么补办") is None  # generic how-to: materials and procedure together


def test_nlu_and_knowledge_run_in_the_rasa_runtime() -> None:
    """Rasa (Python 3.10) imports our nlu and knowledge packages; they must behave the same there."""
    python = REPO / ".venv-rasa" / "bin" / "python"
    code = (
        "import sys, nlu, knowledge; assert sys.version_info[:2] == (3, 10);"
        "c, p = knowledge.load_corpus(knowledge.BUNDLED_CORPUS); assert not p, p[:3];"
        "print(len(c.guides), nlu.normalize('身份證丟了'), nlu.normalize_aligned('補辦'))"
    )
    out = subprocess.run([str(python), "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    n, simplified, aligned = out.stdout.split()
    assert int(n) >= 40 and simplified == "身份证丢了" and aligned == "补办"
