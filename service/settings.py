"""Service settings: one object, read once at start-up from RANKER_* environment variables."""

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def parse_redis_url(value: str | None) -> str | None:
    """Return None for an empty value, "none" or "off" (no Redis), else the URL."""
    if value is None or value.strip().lower() in ("", "none", "off"):
        return None
    return value.strip()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RANKER_", extra="ignore")

    models_dir: Path = Field(
        Path("exported_models"), description="Folder of bundles and the CURRENT pointer."
    )
    bundle_version: str | None = Field(
        None, description="Serve this bundle instead of the one CURRENT names."
    )
    redis_url: str | None = Field(
        "redis://127.0.0.1:6379/0",
        description="User feature store; empty or 'none' serves user features from the bundle's snapshot. "
        "Use rediss:// for TLS and redis://:password@host/0 for a password.",
    )
    redis_cluster: bool = Field(
        False,
        description="Treat redis_url as one node of a Redis Cluster: the client discovers the other "
        "nodes and sends each key to the node that owns its hash slot.",
    )
    redis_key_prefix: str = Field("ranker", description="First part of every user key.")
    redis_timeout_seconds: float = Field(
        0.05,
        gt=0,
        description="Socket timeout of one Redis read; a slower read ranks with default user features.",
    )
    redis_connect_timeout_seconds: float = Field(
        0.1, gt=0, description="Time to open a new Redis connection, e.g. after a Redis restart."
    )
    redis_max_connections: int = Field(
        64, ge=1, description="Redis connections per worker; a read waits for a free one past this."
    )
    deadline_ms: float = Field(
        150.0,
        gt=0,
        description="Time budget of one /rank call. Past it the response comes back at once with the best "
        "order available, flagged degraded (see docs/serving.md).",
    )
    max_inflight: int = Field(
        64,
        ge=1,
        description="POST /rank requests one worker handles at a time; more get 429 with Retry-After.",
    )
    admin_token: SecretStr | None = Field(
        None,
        description="Bearer token of the /admin endpoints (deploy, rollback); unset turns them off.",
    )
    bundle_poll_seconds: float = Field(
        5.0,
        ge=0,
        description="How often to check whether CURRENT names another bundle; 0 turns the watcher off.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="ONNX Runtime provider: auto takes CUDA when onnxruntime-gpu finds a GPU."
    )
    intra_op_threads: int = Field(
        1,
        ge=1,
        description="ONNX Runtime threads per session. More than the cores per worker makes threads fight.",
    )
    inference_workers: int = Field(
        2,
        ge=1,
        description="Threads that run inference off the event loop. Two let one request's ONNX "
        "Runtime call overlap another's Python steps (see docs/performance.md).",
    )
    query_cache_size: int = Field(
        100_000,
        ge=0,
        description="Query embeddings kept in memory (about 1.6 KB each); 0 turns the cache off.",
    )
    max_candidates: int = Field(1000, ge=1, description="Largest candidate list one request may send.")
    max_body_bytes: int = Field(
        1_048_576,
        ge=1024,
        description="Largest request body; a larger one gets 413. 1000 candidates with ids fit in 64 KB.",
    )
    max_new_titles: int = Field(
        8,
        ge=0,
        description="Unknown products embedded from their title per request; further unknown products are "
        "ranked without text and flagged unknown_product. Each title costs an encoder pass: about 4.5 ms "
        "with an fp32 bundle on one core of the 2-core development VM, so 8 fit in the default deadline.",
    )
    max_query_chars: int = Field(
        1024,
        ge=1,
        description="Maximum query length in characters; the encoder reads only its first max_query_tokens.",
    )
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, description="Uvicorn worker processes.")
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = "text"

    @field_validator("admin_token")
    @classmethod
    def _empty_token_means_off(cls, value: SecretStr | None) -> SecretStr | None:
        token = value.get_secret_value().strip() if value is not None else ""
        if not token:
            return None
        # HTTP header values are Latin-1 at best; visible ASCII works with every client.
        if not all("!" <= character <= "~" for character in token):
            raise ValueError("the admin token must be visible ASCII characters without spaces")
        return SecretStr(token)

    @field_validator("redis_url")
    @classmethod
    def _none_means_no_redis(cls, value: str | None) -> str | None:
        return parse_redis_url(value)

    def masked_redis_url(self) -> str | None:
        """Return the Redis URL with any password replaced, for logs and /ready."""
        return mask_url(self.redis_url)


def mask_url(url: str | None) -> str | None:
    """Return `url` with its password, if any, replaced by ***."""
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
