"""One settings object, read from environment variables.

Every module receives a ``Settings`` instance (or the values it needs) from the
caller; nothing reads ``os.environ`` directly. Secrets are ``SecretStr`` so that
they never show up in a repr, a log line or a page.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: a served model name as vLLM's --served-model-name takes it (e.g. meta-llama/Llama-2-7b-hf)
_SERVED_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}")


class Settings(BaseSettings):
    """All configuration of the app. Environment variable names are the upper-case field names."""

    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    # --- the model server (names kept from the original tutorial) ---
    llm_url: str = Field("http://localhost:8000", description="vLLM base URL")
    llm_name: str | None = Field(None, description="served model name; default: /v1/models")
    llm_models: str = Field(
        "",
        description="comma-separated served model names behind LLM_URL that /v1/models does "
        "not list (model pools behind a gateway); the picker offers them too",
    )
    fleet_discovery: bool = Field(
        False,
        description="behind the inference gateway: the chat reads the model pools from the "
        "cluster (every served model in the picker; a pool scaled to 0 is woken when asked)",
    )
    llm_api_key: SecretStr = Field(SecretStr("EMPTY"), description="vLLM --api-key, if set")
    llm_mode: Literal["auto", "chat", "completion"] = "auto"
    llm_timeout_s: float = Field(60.0, gt=0, description="connect/read timeout per request")
    llm_answer_deadline_s: float = Field(
        600.0, gt=0, le=86_400, description="total time one answer may stream"
    )
    llm_notice: str = Field("", description="banner shown on the chat page (e.g. test model)")

    # --- what this process serves ---
    app_mode: Literal["chat", "admin", "all"] = "all"
    app_title: str = "Private LLM chat"

    # --- chat defaults and bounds ---
    default_system_prompt: str = "You are a helpful assistant."
    default_temperature: float = Field(0.7, ge=0.0, le=2.0)
    default_top_p: float = Field(1.0, gt=0.0, le=1.0)
    default_max_tokens: int = Field(512, ge=1)
    max_prompt_chars: int = Field(
        32_000, ge=1, le=200_000, description="longest message and longest system prompt"
    )

    # --- conversation store and limits ---
    database_url: str = "sqlite:///data/chat.db"
    database_pool_size: int = Field(5, ge=1, description="PostgreSQL connections kept open")
    database_max_overflow: int = Field(10, ge=0, description="extra connections under load")
    database_pool_timeout_s: float = Field(
        10.0, gt=0, description="wait for a free connection before saying 'busy'"
    )
    database_connect_timeout_s: int = Field(
        5, ge=2, le=60, description="wait for PostgreSQL to answer a new connection"
    )
    messages_per_minute: int = Field(20, ge=1)
    max_conversations_per_user: int = Field(200, ge=1)
    anonymous_conversation_ttl_days: int = Field(
        30, ge=0, le=3650, description="delete anonymous conversations idle this long; 0: never"
    )

    # --- who may chat, and how many answers at once (README "Security") ---
    max_concurrent_generations: int = Field(
        32, ge=1, description="answers generated at once by the whole app, all replicas"
    )
    trusted_proxy_hops: int = Field(
        1, ge=0, le=10, description="proxies whose X-Forwarded-For entries key guests' limits"
    )
    chat_require_login: bool = Field(False, description="guests see 'Log in to chat' only")

    # --- admin access ---
    admin_emails: str = Field("", description="comma-separated allowlist")
    iap_audience: str = ""
    iap_certs_file: str = Field(
        "", description="JSON {key id: PEM} of IAP public keys; default: Google's (for tests)"
    )
    local_admin: bool = Field(
        False,
        description="admin page for the person at this machine, named by the kubeconfig's "
        "current user; works only when the app listens on a loopback address",
    )

    # --- cluster ---
    kubeconfig: str = Field(
        "", description="kubeconfig path; default in-cluster, then ~/.kube/config"
    )
    k8s_namespace: str = "vllm"
    admin_status_refresh_s: float = Field(
        5.0, ge=1, le=3600, description="how often the admin status view re-reads the cluster"
    )
    switch_unschedulable_grace_s: float = Field(
        180.0,
        gt=0,
        le=3600,
        description="roll a switch back once its new pod has been unschedulable this long "
        "with no node coming from the cluster autoscaler",
    )
    vllm_deployment: str = "vllm"
    fleet: bool = Field(
        False,
        description="the admin page's 'Model pools' section: model pools behind the inference "
        "gateway (k8s/components/inference-gateway sets it)",
    )
    vllm_service: str = "vllm"
    gke_project: str = ""
    gke_location: str = ""
    gke_cluster: str = ""
    gke_node_pool: str = "gpu-pool"
    gke_api_endpoint: str = Field("", description="override, for tests")
    compute_api_endpoint: str = Field(
        "", description="Compute Engine API (GPU quota) override, for tests"
    )

    # --- GPU telemetry (README "GPU telemetry"; webapp/cluster/telemetry.py) ---
    gpu_prometheus_url: str = Field(
        "",
        pattern=r"^(https?://\S+)?$",
        description="PromQL instant-query URL of the managed DCGM metrics; empty: Managed "
        "Service for Prometheus of GKE_PROJECT",
    )
    dcgm_exporter_namespace: str = Field(
        "gpu-operator",
        pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
        description="namespace of the in-cluster DCGM exporter Service",
    )
    dcgm_exporter_service: str = Field(
        "nvidia-dcgm-exporter",
        pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$",
        description="the DCGM exporter Service, read via the API proxy",
    )
    dcgm_exporter_port: str = Field(
        "9400",
        pattern=r"^[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?$",
        description="its port: number or name",
    )
    gpu_telemetry_timeout_s: float = Field(
        5.0, gt=0, le=60, description="wait this long for a telemetry source, then say so"
    )
    gpu_temperature_warn_c: float = Field(
        85.0, gt=0, le=150, description="warn about a GPU hotter than this (degrees C)"
    )

    # --- usage and cost (admin page, README "Usage and cost") ---
    gpu_hourly_price_usd: float | None = Field(
        None,
        ge=0,
        le=10_000,
        description="price of one GPU-hour (USD) for the estimated cost; unset: no cost shown",
    )

    # --- a busy model, seen by a chat user (README "When the model is busy") ---
    chat_busy_after_s: float = Field(
        2.0,
        gt=0,
        le=600,
        description="no first token after this long: read the model server's queue and "
        "tell the user how many requests are ahead",
    )
    chat_busy_poll_s: float = Field(
        2.0, ge=0.5, le=60, description="then read the queue again this often"
    )

    @field_validator("llm_url")
    @classmethod
    def _strip_url(cls, v: str) -> str:
        v = v.strip().rstrip("/")
        if v.endswith("/v1"):
            v = v[: -len("/v1")]
        if not v.startswith(("http://", "https://")):
            raise ValueError("LLM_URL must start with http:// or https://")
        return v

    @field_validator("gpu_hourly_price_usd", mode="before")
    @classmethod
    def _blank_price_is_none(cls, v: object) -> object:
        return None if isinstance(v, str) and not v.strip() else v

    @field_validator("llm_name")
    @classmethod
    def _blank_is_none(cls, v: str | None) -> str | None:
        return v.strip() or None if v is not None else None

    @field_validator("llm_models")
    @classmethod
    def _model_names(cls, v: str) -> str:
        names = [n.strip() for n in v.split(",") if n.strip()]
        for name in names:
            if not _SERVED_NAME.fullmatch(name):
                raise ValueError(
                    f"LLM_MODELS: {name[:80]!r} is not a served model name (letters, digits, "
                    "'.', '_', '-', ':', '/'; at most 200 characters)"
                )
        if len(set(names)) != len(names):
            raise ValueError("LLM_MODELS names a model twice")
        return ",".join(names)

    @property
    def served_model_names(self) -> tuple[str, ...]:
        """LLM_MODELS as names, in the order given."""
        return tuple(n for n in self.llm_models.split(",") if n)

    @property
    def admin_allowlist(self) -> frozenset[str]:
        """Lower-cased admin e-mail addresses."""
        return frozenset(e.strip().lower() for e in self.admin_emails.split(",") if e.strip())

    @property
    def gke_configured(self) -> bool:
        return bool(self.gke_project and self.gke_location and self.gke_cluster)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
