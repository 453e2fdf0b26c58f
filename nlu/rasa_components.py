"""govbot's custom Rasa 3.6 graph components. Importable only inside the Rasa runtime (.venv-rasa).

Named in config.yml by module path:
- `TextNormalizer`       before the tokenizer: 繁→简, 全角→半角 in place (same length: entity offsets stay valid).
- `GovJiebaTokenizer`    Rasa's JiebaTokenizer whose jieba cache lives in our cache folder, not the system temp.
- `ServiceLinker`        after the entity extractors: links the `service` mention to a guide id.
- `SparseIntentClassifier` logistic regression over the sparse features; persisted with joblib (no skops:
                         skops scans every loaded module at load time and took minutes at server start here).
                         (Rasa already registers a `SklearnIntentClassifier`; the recipe keys components by class
                         name, hence the different name.)
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np
import scipy.sparse
from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.classifiers.classifier import IntentClassifier
from rasa.nlu.featurizers.featurizer import Featurizer
from rasa.nlu.tokenizers.jieba_tokenizer import JiebaTokenizer
from rasa.shared.nlu.constants import ENTITIES, INTENT, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from .normalize import normalize_aligned
from .service_index import ServiceIndex

logger = logging.getLogger(__name__)

SERVICE = "service"
SERVICE_CANDIDATES = "service_candidates"  # parse-data key: guide ids an ambiguous mention may mean


def _files_digest(*paths: Optional[str]) -> Optional[str]:
    """Hash of the files at `paths` (a file or every file in a folder), for `fingerprint_addon`: Rasa's training
    cache only sees the config and the training data, not files a component reads itself."""
    import hashlib

    h = hashlib.sha256()
    for p in paths:
        if not p:
            continue
        path = Path(p)
        files = sorted(path.glob("*")) if path.is_dir() else [path]
        for f in files:
            if f.is_file():
                h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def _default_cache_dir() -> Path:
    return Path(os.environ.get("GOVBOT_CACHE_DIR", Path.home() / ".cache" / "govbot"))


# --------------------------------------------------------------------------------------------------------------
@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER, is_trainable=False)
class TextNormalizer(GraphComponent):
    """Rewrites the message text character by character (nlu.normalize_aligned): 繁→简, 全角→半角.

    Registered as a message *featurizer* (it adds no features) because only tokenizers and featurizers run on the
    training data in Rasa's default recipe; it must come first in the pipeline. The length never changes, so the
    entity annotations of training examples keep their offsets. The original text is kept in the parse data as
    `text_original` (only when it differs).
    """

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {}

    @classmethod
    def create(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> TextNormalizer:
        return cls()

    @staticmethod
    def _normalize(message: Message) -> None:
        text = message.get(TEXT)
        if not text:
            return
        normalized = normalize_aligned(text)
        if normalized != text:
            message.set("text_original", text, add_to_output=True)
            message.set(TEXT, normalized)
            for entity in message.get(ENTITIES) or []:  # annotated values: the same rewrite
                if isinstance(entity.get("value"), str):
                    entity["value"] = normalize_aligned(entity["value"])

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        for message in training_data.training_examples:
            self._normalize(message)
        return training_data

    def process(self, messages: list[Message]) -> list[Message]:
        for message in messages:
            self._normalize(message)
        return messages


# --------------------------------------------------------------------------------------------------------------
@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.MESSAGE_TOKENIZER, is_trainable=True)
class GovJiebaTokenizer(JiebaTokenizer):
    """JiebaTokenizer (government dictionary from `dictionary_path`, a folder) with jieba's prefix-dictionary
    cache in `cache_dir` (default $GOVBOT_CACHE_DIR/jieba) instead of the shared system temp folder."""

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {**JiebaTokenizer.get_default_config(), "cache_dir": None}

    @classmethod
    def fingerprint_addon(cls, config: dict[str, Any]) -> Optional[str]:
        return _files_digest(config.get("dictionary_path"))

    @staticmethod
    def _set_cache_dir(config: dict[str, Any]) -> None:
        import jieba

        folder = Path(config.get("cache_dir") or _default_cache_dir() / "jieba")
        folder.mkdir(parents=True, exist_ok=True)
        jieba.dt.tmp_dir = str(folder)
        jieba.setLogLevel(logging.WARNING)

    @classmethod
    def create(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> GovJiebaTokenizer:
        cls._set_cache_dir(config)
        return super().create(config, model_storage, resource, execution_context)  # type: ignore[return-value]

    @classmethod
    def load(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
        **kwargs: Any,
    ) -> GovJiebaTokenizer:
        cls._set_cache_dir(config)
        return super().load(config, model_storage, resource, execution_context, **kwargs)  # type: ignore


# --------------------------------------------------------------------------------------------------------------
@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.ENTITY_EXTRACTOR, is_trainable=True)
class ServiceLinker(GraphComponent):
    """Turns `service` mentions into guide ids (entity value = guide id), so the `service` slot holds an id.

    Looks at the whole normalised message with the service index (names, aliases, generic nouns generated from
    the knowledge base by bot/generate.py): a unique link rewrites every `service` entity's value to that id, or
    adds one entity over the matched span when the extractors found none (aliases are phrases: 「身份证丢了」).
    An ambiguous mention (「身份证」: four guides) is *removed* -- the slot keeps its previous guide -- and the
    possible guides are put into the parse data as `service_candidates` for the action server.
    The index is read at training time from `terms_path` and stored in the model.
    """

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {"terms_path": "bot/generated/service_terms.json", "entity": SERVICE}

    def __init__(self, config: dict[str, Any], model_storage: ModelStorage, resource: Resource,
                 data: Optional[dict[str, Any]] = None) -> None:
        self._config = config
        self._model_storage = model_storage
        self._resource = resource
        self._data = data or {"terms": {}, "weak": []}
        self._index = ServiceIndex(self._data.get("terms", {}), self._data.get("weak", []))

    @classmethod
    def fingerprint_addon(cls, config: dict[str, Any]) -> Optional[str]:
        return _files_digest(config.get("terms_path"))

    @classmethod
    def create(cls, config: dict[str, Any], model_storage: ModelStorage, resource: Resource,
               execution_context: ExecutionContext) -> ServiceLinker:
        return cls(config, model_storage, resource)

    def train(self, training_data: TrainingData) -> Resource:
        path = Path(self._config["terms_path"])
        self._data = json.loads(path.read_text(encoding="utf-8"))
        self._index = ServiceIndex(self._data.get("terms", {}), self._data.get("weak", []))
        with self._model_storage.write_to(self._resource) as folder:
            (folder / "service_terms.json").write_text(json.dumps(self._data, ensure_ascii=False), encoding="utf-8")
        return self._resource

    @classmethod
    def load(cls, config: dict[str, Any], model_storage: ModelStorage, resource: Resource,
             execution_context: ExecutionContext, **kwargs: Any) -> ServiceLinker:
        try:
            with model_storage.read_from(resource) as folder:
                data = json.loads((folder / "service_terms.json").read_text(encoding="utf-8"))
        except (ValueError, FileNotFoundError):
            logger.warning("ServiceLinker: no service index in the model; service mentions stay unlinked")
            data = None
        return cls(config, model_storage, resource, data)

    def process(self, messages: list[Message]) -> list[Message]:
        entity_type = self._config["entity"]
        for message in messages:
            text = message.get(TEXT)
            if not text:
                continue
            guide, span, candidates = self._index.link(text)
            entities = list(message.get(ENTITIES) or [])
            mentions = [e for e in entities if e.get("entity") == entity_type]
            others = [e for e in entities if e.get("entity") != entity_type]
            if guide:
                if mentions:
                    for e in mentions:
                        e["value"] = guide
                        e.setdefault("processors", []).append(self.__class__.__name__)
                else:
                    assert span is not None
                    mentions = [{"entity": entity_type, "start": span[0], "end": span[1], "value": guide,
                                 "extractor": self.__class__.__name__}]
                message.set(ENTITIES, others + mentions, add_to_output=True)
            elif mentions:
                message.set(ENTITIES, others, add_to_output=True)
            if candidates:
                message.set(SERVICE_CANDIDATES, candidates, add_to_output=True)
        return messages


# --------------------------------------------------------------------------------------------------------------
@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER, is_trainable=True)
class SparseIntentClassifier(IntentClassifier, GraphComponent):
    """Multinomial logistic regression over the sentence-level sparse (and dense, if any) features.

    Features: sublinear tf-idf weighting learnt on the training set, L2-normalised. Persisted with joblib, loads in
    milliseconds. Confidences are the predicted probabilities (the FallbackClassifier threshold is chosen from
    their histogram on held-out data, see config.yml).
    """

    @classmethod
    def required_components(cls) -> list[type]:
        return [Featurizer]

    @staticmethod
    def required_packages() -> list[str]:
        return ["sklearn", "joblib"]

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {"C": 30.0, "max_iter": 2000, "class_weight": "balanced", "tfidf": True, "ranking_length": 10,
                "random_state": 42}

    def __init__(self, config: dict[str, Any], model_storage: ModelStorage, resource: Resource,
                 model: Optional[dict[str, Any]] = None) -> None:
        self.component_config = {**self.get_default_config(), **config}
        self._model_storage = model_storage
        self._resource = resource
        self._model = model  # {"tfidf": TfidfTransformer | None, "clf": LogisticRegression, "dim": int}

    @classmethod
    def create(cls, config: dict[str, Any], model_storage: ModelStorage, resource: Resource,
               execution_context: ExecutionContext) -> SparseIntentClassifier:
        return cls(config, model_storage, resource)

    @staticmethod
    def _features(message: Message) -> Optional[scipy.sparse.csr_matrix]:
        sparse = message.get_sparse_features(TEXT)[1]
        dense = message.get_dense_features(TEXT)[1]
        parts = []
        if sparse is not None:
            parts.append(scipy.sparse.csr_matrix(sparse.features))
        if dense is not None:
            parts.append(scipy.sparse.csr_matrix(dense.features))
        if not parts:
            return None
        return scipy.sparse.hstack(parts).tocsr()

    def _matrix(self, rows: list[Optional[scipy.sparse.csr_matrix]], dim: int) -> scipy.sparse.csr_matrix:
        fixed = []
        for row in rows:
            if row is None:
                row = scipy.sparse.csr_matrix((1, dim))
            elif row.shape[1] != dim:  # defensive: should not happen with one trained pipeline
                row = scipy.sparse.csr_matrix(row[:, :dim]) if row.shape[1] > dim else scipy.sparse.hstack(
                    [row, scipy.sparse.csr_matrix((1, dim - row.shape[1]))]).tocsr()
            fixed.append(row)
        X = scipy.sparse.vstack(fixed).tocsr()
        if self._model and self._model.get("tfidf") is not None:
            X = self._model["tfidf"].transform(X)
        return X

    def train(self, training_data: TrainingData) -> Resource:
        from sklearn.feature_extraction.text import TfidfTransformer
        from sklearn.linear_model import LogisticRegression

        examples = [e for e in training_data.intent_examples if e.get(INTENT) and e.get(TEXT)]
        rows = [self._features(e) for e in examples]
        rows_ok = [(r, e.get(INTENT)) for r, e in zip(rows, examples) if r is not None]
        if len({y for _, y in rows_ok}) < 2:
            logger.warning("SparseIntentClassifier: fewer than two intents with features; not trained")
            return self._resource
        dim = rows_ok[0][0].shape[1]
        X = scipy.sparse.vstack([r for r, _ in rows_ok]).tocsr()
        y = [label for _, label in rows_ok]
        cfg = self.component_config
        tfidf = TfidfTransformer(sublinear_tf=True) if cfg["tfidf"] else None
        if tfidf is not None:
            X = tfidf.fit_transform(X)
        clf = LogisticRegression(C=cfg["C"], max_iter=cfg["max_iter"], class_weight=cfg["class_weight"],
                                 random_state=cfg["random_state"])
        clf.fit(X, y)
        self._model = {"tfidf": tfidf, "clf": clf, "dim": dim}
        self.persist()
        return self._resource

    def persist(self) -> None:
        import joblib

        with self._model_storage.write_to(self._resource) as folder:
            joblib.dump(self._model, folder / "intent_classifier.joblib")

    @classmethod
    def load(cls, config: dict[str, Any], model_storage: ModelStorage, resource: Resource,
             execution_context: ExecutionContext, **kwargs: Any) -> SparseIntentClassifier:
        import joblib

        try:
            with model_storage.read_from(resource) as folder:
                model = joblib.load(folder / "intent_classifier.joblib")
        except (ValueError, FileNotFoundError):
            logger.warning("SparseIntentClassifier: no trained model found; it will not classify")
            model = None
        return cls(config, model_storage, resource, model)

    def process(self, messages: list[Message]) -> list[Message]:
        if not self._model:
            return messages
        clf = self._model["clf"]
        rows = [self._features(m) for m in messages]
        X = self._matrix(rows, self._model["dim"])
        probas = clf.predict_proba(X)
        labels = clf.classes_
        n = int(self.component_config["ranking_length"])
        for message, row, p in zip(messages, rows, probas):
            if row is None:  # no text features at all (empty text)
                message.set(INTENT, {"name": None, "confidence": 0.0}, add_to_output=True)
                message.set("intent_ranking", [], add_to_output=True)
                continue
            order = np.argsort(-p)
            ranking = [{"name": str(labels[i]), "confidence": float(p[i])} for i in order]
            message.set(INTENT, ranking[0], add_to_output=True)
            message.set("intent_ranking", ranking[:n] if n > 0 else ranking, add_to_output=True)
        return messages
