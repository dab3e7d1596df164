"""Request and response bodies of the HTTP API, published in the OpenAPI document."""

import math
import re

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, field_validator, model_validator

from service.features.text import has_visible_text

# C0 and C1 control characters (Unicode category Cc): tabs, newlines, NUL, DEL and the like.
# A query reaches the tokenizer with each replaced by a space. Format characters (Cf), such as
# right-to-left marks and the zero-width joiner inside emoji, are kept.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
MAX_TOP_K = 10_000


RANK_EXAMPLE = {
    "user_id": "u000042",
    "query": "angle bracket",
    "candidates": [
        {"product_id": "hd:100001", "title": "Simpson Strong-Tie 12-Gauge Angle"},
        {"product_id": "hd:100002"},
        {"product_id": "new-sku-1", "title": "Everbilt 4 in. Zinc-Plated Corner Brace"},
    ],
    "top_k": 10,
    "explain": False,
}


class CandidateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product_id: str = Field(min_length=1, max_length=256, description="Catalog id of the product.")
    title: str | None = Field(
        None, max_length=2048, description="Product title; used to embed a product the bundle does not know."
    )


class RankRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [RANK_EXAMPLE]})

    user_id: str | None = Field(
        None, min_length=1, max_length=256, description="Absent means an anonymous user."
    )
    query: str = Field(min_length=1, description="The search text as the user typed it.")
    candidates: list[CandidateIn] = Field(
        min_length=1, description="Products to rank; product ids must be unique."
    )
    top_k: StrictInt | None = Field(
        None,
        ge=1,
        le=MAX_TOP_K,
        description="Return only the best top_k items (default: all); more than the candidates returns all.",
    )
    explain: StrictBool = Field(
        False, description="Add per-task probabilities and feature values to each item."
    )

    @field_validator("query")
    @classmethod
    def _query_has_text(cls, query: str) -> str:
        query = _CONTROL_CHARACTERS.sub(" ", query)
        if not has_visible_text(query):
            raise ValueError("query has no visible characters; send the user's search text")
        return query

    @model_validator(mode="after")
    def _unique_products(self) -> "RankRequest":
        seen: set[str] = set()
        duplicates = sorted(
            {c.product_id for c in self.candidates if c.product_id in seen or seen.add(c.product_id)}
        )
        if duplicates:
            shown = ", ".join(duplicates[:5])
            raise ValueError(f"candidates repeat product_id {shown}; send each product once")
        return self


class RankedItemOut(BaseModel):
    product_id: str
    rank: int = Field(description="1-based position in the ranked list.")
    score: float | None = Field(
        description="Fused score: the weighted sum of log task probabilities; higher ranks first. "
        "null when the list fell back to input order (ranker_failed, deadline_exceeded)."
    )
    task_scores: dict[str, float] = Field(
        description="Probability per task: click, add_to_cart, purchase; empty when score is null."
    )
    explanation: dict | None = Field(None, description="Present when the request set explain=true.")

    @field_validator("score")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        return value if value is None or math.isfinite(value) else -1e9


class RankResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "request_id": "3f0c6f1e9b6b4f9c",
                    "bundle_version": "20261204-120000-202429",
                    "items": [
                        {
                            "product_id": "hd:100001",
                            "rank": 1,
                            "score": -3.2,
                            "task_scores": {"click": 0.41, "add_to_cart": 0.07, "purchase": 0.03},
                        },
                    ],
                    "degraded": False,
                    "degraded_reasons": [],
                }
            ]
        }
    )

    request_id: str
    bundle_version: str
    items: list[RankedItemOut]
    degraded: bool = Field(description="True when some input fell back to a default; see degraded_reasons.")
    degraded_reasons: list[str] = Field(
        description="Why a fallback was used: user_not_found, user_record_invalid, "
        "feature_store_unavailable, feature_store_timeout, unknown_product, encoder_failed, "
        "ranker_failed, deadline_exceeded."
    )


class ErrorBody(BaseModel):
    code: str = Field(description="Machine-readable error kind, e.g. invalid_request.")
    message: str
    request_id: str
    details: list[dict] = Field(
        default_factory=list, description="One entry per invalid field: location and problem."
    )


class ErrorResponse(BaseModel):
    error: ErrorBody
