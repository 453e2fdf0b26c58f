"""The FastAPI gateway. For now it serves the knowledge API; channels and the clerk desk attach here."""

from __future__ import annotations

from typing import Any, Optional

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from knowledge import ASPECTS
from retrieval import KnowledgeService


class AskRequest(BaseModel):
    question: str = Field(min_length=1, max_length=500, description="市民的问题")
    aspect: Optional[str] = Field(default=None, description=f"只问某一项：{', '.join(ASPECTS)}")
    situation: Optional[str] = Field(default=None, description="情形 id")
    region: Optional[str] = None


def create_app(kb: Optional[KnowledgeService] = None) -> FastAPI:
    app = FastAPI(title="govbot 政务智能问答", version="0.1.0")
    service = kb or KnowledgeService()

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        data = service.retriever.data
        return {"status": "ok", "index": data.manifest["hash"], "units": len(data.units)}

    @app.post("/api/ask")
    def ask(req: AskRequest) -> dict[str, Any]:
        if req.aspect and req.aspect not in ASPECTS:
            raise HTTPException(422, f"未知的 aspect“{req.aspect}” / unknown aspect; 可选：{', '.join(ASPECTS)}")
        if not req.question.strip():
            raise HTTPException(422, "问题不能为空 / question must not be empty")
        result = service.answer(req.question, aspect=req.aspect, situation=req.situation, region=req.region)
        return {
            "decision": result.decision,
            "aspect": result.aspect,
            "confidence": result.confidence,
            "cards": result.cards,
            "candidates": [{"id": h.doc_id, "title": h.title, "kind": h.kind, "confidence": h.confidence}
                           for h in result.hits],
        }

    @app.post("/api/admin/reload")
    def reload() -> dict[str, Any]:
        return {"reloaded": service.reload(), "index": service.retriever.data.manifest["hash"]}

    return app
