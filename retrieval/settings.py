"""The one typed settings object. Every value can be set by an environment variable `GOVBOT_<NAME>`
or in a `.env` file in the working directory; defaults run the whole system embedded on one machine."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal, Optional

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

_REPO = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GOVBOT_", env_file=".env", extra="ignore")

    cache_dir: Path = Field(
        default=Path.home() / ".cache" / "govbot",
        description="Built artifacts reused across clones: venvs, the embedding model, embeddings, indexes.",
    )
    corpus_dir: Path = Field(default=_REPO / "knowledge" / "corpus", description="The knowledge base folder.")
    embedding_model: Optional[str] = Field(
        default=None,
        description="A sentence-transformers model path or name; empty = multilingual-e5-small rebuilt offline.",
    )
    query_prompt: str = Field(default="query: ", description="Prefix for questions (e5 convention).")
    passage_prompt: str = Field(default="passage: ", description="Prefix for documents (e5 convention).")
    embed_batch_size: int = Field(default=32, ge=1)
    torch_threads: int = Field(default=2, ge=1, description="CPU threads for embedding.")
    max_passage_chars: int = Field(default=300, ge=50, description="Long answers are chunked to this size.")
    index_kind: Literal["auto", "flat", "hnsw", "ivf"] = Field(
        default="auto", description="FAISS index type; auto = flat below 50k vectors, HNSW above."
    )
    index_dir: Optional[Path] = Field(
        default=None, description="Where built indexes live; default <cache_dir>/indexes."
    )
    confidence_threshold: Optional[float] = Field(
        default=None, ge=0, le=1, description="Override the learned answer/hand-off threshold."
    )

    @property
    def index_root(self) -> Path:
        return self.index_dir or self.cache_dir / "indexes"

    @property
    def models_dir(self) -> Path:
        return self.cache_dir / "models"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
