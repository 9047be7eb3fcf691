"""Wire models of the admin API (``/admin/v1/...``): request bodies and response objects.

Request bodies forbid unknown fields (a typo such as ``"rpm_limit"`` is a 400, not a silent
no-op). PATCH bodies change exactly the fields they name: a field set to ``null`` clears it
(e.g. a limit becomes unlimited), an absent field is left alone. Money is integer micro-units
of a currency (``*_micros``); prices are per 1M tokens; times are ISO 8601 in UTC.

Response objects carry an ``object`` tag, as OpenAI's do. No object ever carries a key's
hash; the plaintext key appears only in ``CreatedKeyObject.key``, once, on create and rotate.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from modelgrid.core.types import jurisdiction_code
from modelgrid.protocol.text import Label

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1

# names and key names refuse control characters (``protocol.text``)
Name = Annotated[Label, Field(min_length=1, max_length=200)]
Region = Annotated[str, Field(min_length=1, max_length=64)]
# A region's country or bloc, as ``core.types.jurisdiction_code`` checks and upper-cases it.
Jurisdiction = Annotated[str, AfterValidator(jurisdiction_code)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
Month = Annotated[str, Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")]
Count32 = Annotated[int, Field(ge=0, le=INT32_MAX)]
Count64 = Annotated[int, Field(ge=0, le=INT64_MAX)]

LIMIT_COLUMNS = {
    "rpm": "rpm_limit",
    "tpm": "tpm_limit",
    "concurrency": "concurrency_limit",
    "monthly_budget_micros": "monthly_budget_micros",
    "monthly_token_budget": "monthly_token_budget",
}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Limits(_Body):
    """Limits of one scope; ``None`` = unlimited at this level. In a PATCH, only the named
    fields change."""

    rpm: Count32 | None = None
    tpm: Count32 | None = None
    concurrency: Count32 | None = None
    monthly_budget_micros: Count64 | None = None
    monthly_token_budget: Count64 | None = None


class WorkspaceCreate(_Body):
    """``home_region`` defaults to the first of ``allowed_regions``, else ``local``."""

    name: Name
    currency: Currency = "USD"
    home_region: Region | None = None
    allowed_regions: list[Region] | None = None
    allowed_jurisdictions: list[Jurisdiction] | None = None
    limits: Limits = Field(default_factory=Limits)


class WorkspacePatch(_Body):
    home_region: Region | None = None
    allowed_regions: list[Region] | None = None
    allowed_jurisdictions: list[Jurisdiction] | None = None
    limits: Limits | None = None


class KeyCreate(_Body):
    """A new key; ``expires_at`` or ``expires_in_s`` (not both), or neither for no expiry."""

    name: Annotated[Label, Field(max_length=200)] = ""
    role: Literal["tenant", "admin"] = "tenant"
    allowed_models: list[Name] | None = None
    allowed_regions: list[Region] | None = None
    allowed_jurisdictions: list[Jurisdiction] | None = None
    expires_at: datetime | None = None
    expires_in_s: Annotated[int, Field(gt=0, le=100 * 365 * 86400)] | None = None
    limits: Limits = Field(default_factory=Limits)

    @model_validator(mode="after")
    def _one_expiry(self) -> KeyCreate:
        if self.expires_at is not None and self.expires_in_s is not None:
            raise ValueError("give expires_at or expires_in_s, not both")
        return self


class KeyPatch(_Body):
    name: Annotated[Label, Field(max_length=200)] | None = None
    allowed_models: list[Name] | None = None
    allowed_regions: list[Region] | None = None
    allowed_jurisdictions: list[Jurisdiction] | None = None
    expires_at: datetime | None = None
    limits: Limits | None = None


class KeyRotate(_Body):
    """Optional expiry of the replacement key (default: the old key's ``expires_at``)."""

    expires_at: datetime | None = None
    expires_in_s: Annotated[int, Field(gt=0, le=100 * 365 * 86400)] | None = None

    @model_validator(mode="after")
    def _one_expiry(self) -> KeyRotate:
        if self.expires_at is not None and self.expires_in_s is not None:
            raise ValueError("give expires_at or expires_in_s, not both")
        return self


class PriceCreate(_Body):
    """A price book entry; ``cached_input_micros_per_1m`` defaults to the input price and
    ``effective_from`` to now (it may lie in the future, never in the past)."""

    model: Name
    region: Region | None = None
    currency: Currency = "USD"
    input_micros_per_1m: Count64
    cached_input_micros_per_1m: Count64 | None = None
    output_micros_per_1m: Count64
    effective_from: datetime | None = None


class WorkspaceObject(BaseModel):
    object: Literal["workspace"] = "workspace"
    id: str
    name: str
    currency: str
    home_region: str
    allowed_regions: list[str] | None
    allowed_jurisdictions: list[str] | None
    limits: Limits
    created_at: datetime


class KeyObject(BaseModel):
    object: Literal["api_key"] = "api_key"
    id: str
    prefix: str
    name: str
    role: str
    workspace_id: str
    allowed_models: list[str] | None
    allowed_regions: list[str] | None
    allowed_jurisdictions: list[str] | None
    limits: Limits
    expires_at: datetime | None
    created_at: datetime
    revoked_at: datetime | None


class CreatedKeyObject(KeyObject):
    """A key with its plaintext ``key``: returned once, never stored, never shown again."""

    key: str


class PriceObject(BaseModel):
    object: Literal["price"] = "price"
    id: int
    model: str
    region: str | None
    currency: str
    input_micros_per_1m: int
    cached_input_micros_per_1m: int
    output_micros_per_1m: int
    effective_from: datetime
    created_at: datetime


class UsageObject(BaseModel):
    """One ledger row (``usage_records``)."""

    object: Literal["usage_record"] = "usage_record"
    request_id: str
    client_request_id: str | None
    api_key_id: str | None
    workspace_id: str | None
    model: str
    region: str | None
    endpoint: str
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    cost_micros: int
    currency: str | None
    price_id: int | None
    ttft_ms: int | None
    total_ms: int
    status: int
    finish_reason: str | None
    created_at: datetime


class UsageTotals(BaseModel):
    """Sums over a set of ledger rows; ``cost_micros`` per currency (unpriced rows cost 0 and
    add no entry)."""

    requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    cost_micros: dict[str, int] = Field(default_factory=dict)


class UsagePage(BaseModel):
    """A page of ledger rows (oldest first) and the totals of every row matching the filter.
    Pass ``last_id`` as ``after`` for the next page while ``has_more``."""

    object: Literal["list"] = "list"
    data: list[UsageObject]
    has_more: bool
    last_id: str | None
    totals: UsageTotals


class InvoiceLine(BaseModel):
    """One (model, region, currency) of the month; ``batch`` lines hold its batch jobs'
    lines (billed at the batch price), apart from its online requests."""

    model: str
    region: str | None
    currency: str
    requests: int
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    cost_micros: int
    batch: bool = False


class Invoice(BaseModel):
    """A workspace's month: its ledger rows grouped per (model, region, currency).

    ``total_cost_micros`` is the sum of the rows' ``cost_micros`` in the workspace's
    ``currency`` (unpriced rows count as 0); ``totals_by_currency`` holds every currency that
    occurs, should a price book entry use another one.
    """

    object: Literal["invoice"] = "invoice"
    workspace_id: str
    workspace_name: str
    month: str
    period_start: datetime
    period_end: datetime
    currency: str
    lines: list[InvoiceLine]
    requests: int
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    total_cost_micros: int
    totals_by_currency: dict[str, int]


class AuditObject(BaseModel):
    object: Literal["audit_entry"] = "audit_entry"
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    details: dict[str, Any] | None


class ListObject(BaseModel):
    """A plain list, answered whole (regions, deployments)."""

    object: Literal["list"] = "list"
    data: list[Any]
    has_more: bool = False


class ListPage(BaseModel):
    """A page of a list, in the /v1 lists' shape: ``first_id`` / ``last_id`` are the ids (as
    text) of the page's first and last items (``None`` when it is empty), ``has_more`` when
    a ``limit`` cut it short; the next page's cursor is ``last_id``."""

    object: Literal["list"] = "list"
    data: list[Any]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


__all__ = [
    "LIMIT_COLUMNS",
    "AuditObject",
    "CreatedKeyObject",
    "Invoice",
    "InvoiceLine",
    "KeyCreate",
    "KeyObject",
    "KeyPatch",
    "KeyRotate",
    "Limits",
    "ListObject",
    "ListPage",
    "Month",
    "PriceCreate",
    "PriceObject",
    "UsageObject",
    "UsagePage",
    "UsageTotals",
    "WorkspaceCreate",
    "WorkspaceObject",
    "WorkspacePatch",
]
