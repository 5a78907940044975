"""Request bodies and query strings of the JSON API as pydantic models (also the OpenAPI schemas)."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, ClassVar, Literal

from app.bus import EVENT_ID_PATTERN
from app.web.api.schema_base import Body, Page, Query
from app.web.api.when import When, in_utc_range
from pydantic import AwareDatetime, BeforeValidator, Field, field_validator

Id = Annotated[int, Field(ge=1, le=2_147_483_647)]
Priority = Annotated[int, Field(ge=0, le=3, description="0 = P0 (highest) .. 3 = P3")]
Name = Annotated[str, Field(min_length=1, max_length=100)]
Title = Annotated[str, Field(min_length=1, max_length=200)]
LongText = Annotated[str, Field(max_length=65_536)]
Tag = Annotated[str, Field(min_length=1, max_length=50)]
BeadType = Literal["task", "bug", "feature", "epic", "decision"]
BeadStatus = Literal["open", "in_progress", "blocked", "closed"]
GitStrategy = Literal["direct", "branch"]
Role = Literal["admin", "user", "viewer", "service"]


# --- auth and users
class Login(Body):
    username: Annotated[str, Field(min_length=1, max_length=64)]
    password: Annotated[str, Field(min_length=1, max_length=1024)]


class UserCreate(Body):
    username: Annotated[str, Field(min_length=1, max_length=64)]
    password: Annotated[str, Field(min_length=8, max_length=1024)]
    role: Role = "user"


class PasswordChange(Body):
    current_password: Annotated[str, Field(min_length=1, max_length=1024)]
    new_password: Annotated[str, Field(min_length=8, max_length=1024)]


class ApiKeyCreate(Body):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    user_id: Id | None = Field(None, description="admins: the key of another user (a service account); default: mine")
    permissions: Annotated[list[Annotated[str, Field(max_length=40)]], Field(max_length=50)] | None = None
    expires_at: Annotated[AwareDatetime, Field(strict=False)] | None = None  # JSON sends text

    @field_validator("expires_at")
    @classmethod
    def _expires_in_range(cls, value: datetime | None) -> datetime | None:
        return None if value is None else in_utc_range(value)


class KeyFilters(Page):
    all: bool = False


class SecurityEventFilters(Page):
    type: Annotated[str, Field(max_length=40)] | None = None
    username: Annotated[str, Field(max_length=64)] | None = None


class UserUpdate(Body):
    role: Role | None = None
    is_active: bool | None = None
    password: Annotated[str, Field(min_length=8, max_length=1024)] | None = None


# --- projects
class ProjectCreate(Body):
    name: Name
    description: LongText = ""
    git_repo: Annotated[str, Field(min_length=1, max_length=1000)] | None = None
    default_branch: Annotated[str, Field(min_length=1, max_length=100)] = "main"
    git_strategy: GitStrategy = "branch"
    dedicated: bool = False
    max_concurrent: Annotated[int, Field(ge=1, le=1000)] | None = None


class ProjectUpdate(Body):
    not_null: ClassVar[frozenset[str]] = frozenset({"name", "description", "default_branch", "git_strategy",
                                                    "dedicated"})
    name: Name | None = None
    description: LongText | None = None
    git_repo: Annotated[str, Field(min_length=1, max_length=1000)] | None = None
    default_branch: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    git_strategy: GitStrategy | None = None
    dedicated: bool | None = None
    max_concurrent: Annotated[int, Field(ge=1, le=1000)] | None = None


# --- beads
class BeadCreate(Body):
    project_id: Id
    title: Title
    description: LongText = ""
    priority: Priority = 2
    type: BeadType = "task"
    tags: Annotated[list[Tag], Field(max_length=20)] = []
    blocked_by: Annotated[list[Id], Field(max_length=100)] = []
    acceptance: Annotated[str, Field(max_length=4000)] | None = None
    owner_id: Annotated[Id, Field(description="the person responsible (a user id); notified when assigned")] | None \
        = None


class BeadUpdate(Body):
    not_null: ClassVar[frozenset[str]] = frozenset({"title", "priority", "type"})
    title: Title | None = None
    description: LongText | None = None
    priority: Priority | None = None
    type: BeadType | None = None
    tags: Annotated[list[Tag], Field(max_length=20)] | None = None
    acceptance: Annotated[str, Field(max_length=4000)] | None = None
    status: Literal["open", "blocked", "closed"] | None = None
    reason: Annotated[str, Field(max_length=4000)] | None = None
    owner_id: Annotated[Id, Field(description="a user id; null clears it")] | None = None


class BeadFilters(Page):
    project_id: Id | None = None
    status: BeadStatus | None = None
    priority: Annotated[int, Field(ge=0, le=3)] | None = None
    type: BeadType | None = None
    assigned_to: Id | None = None
    tag: Tag | None = None


class ReadyFilters(Page):
    project_id: Id | None = None


class DeleteOptions(Query):
    force: bool = False


class Dependency(Body):
    blocked_by: Id | Annotated[list[Id], Field(min_length=1, max_length=100)]


class Claim(Body):
    agent_id: Id


class Reason(Body):
    reason: Annotated[str, Field(max_length=4000)] | None = None


class CommentCreate(Body):
    text: Annotated[str, Field(min_length=1, max_length=65_536)]
    author: Annotated[str, Field(min_length=1, max_length=100)] | None = None


# --- agents and personas
class AgentCreate(Body):
    name: Name
    persona: Annotated[str, Field(min_length=1, max_length=64)]
    project_id: Id | None = None
    role: Annotated[str, Field(max_length=100)] | None = None


class AgentUpdate(Body):
    not_null: ClassVar[frozenset[str]] = frozenset({"name", "persona"})
    name: Name | None = None
    persona: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    role: Annotated[str, Field(max_length=100)] | None = None


class AgentFilters(Page):
    project_id: Id | None = None
    status: Literal["idle", "working", "paused", "complete"] | None = None
    persona: Annotated[str, Field(max_length=64)] | None = None


class PersonaPut(Body):
    title: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    role: Annotated[str, Field(max_length=100)] | None = None
    description: Annotated[str, Field(max_length=4000)] | None = None
    instructions: Annotated[str, Field(max_length=65_536)] | None = None
    hints: Annotated[list[Tag], Field(max_length=50)] | None = None


# --- providers
class ProviderCreate(Body):
    name: Name
    endpoint: Annotated[str, Field(min_length=1, max_length=1000)]
    model: Annotated[str, Field(max_length=200)] | None = None
    api_key: Annotated[str, Field(max_length=4000)] | None = None


class ProviderUpdate(Body):
    not_null: ClassVar[frozenset[str]] = frozenset({"name", "endpoint"})
    name: Name | None = None
    endpoint: Annotated[str, Field(min_length=1, max_length=1000)] | None = None
    model: Annotated[str, Field(max_length=200)] | None = None
    api_key: Annotated[str, Field(max_length=4000)] | None = None


# --- system
class ConfigValue(Body):
    value: bool | int


LogLevel = Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
                     BeforeValidator(lambda value: value.upper() if isinstance(value, str) else value)]


class LogStreamFilters(Query):
    level: LogLevel | None = None
    source: Annotated[str, Field(max_length=64)] | None = None
    bead_id: Id | None = None
    since: Annotated[str, Field(pattern=EVENT_ID_PATTERN)] | None = None
    max_seconds: Annotated[float, Field(gt=0, le=86_400, description="end the stream after this many seconds")
                           ] | None = None


class LogFilters(Page):
    level: LogLevel | None = None
    source: Annotated[str, Field(max_length=64)] | None = None
    bead_id: Id | None = None
    since: When | None = None


# --- engine
class DecisionFilters(Page):
    status: Literal["open", "closed"] | None = "open"
    project_id: Id | None = None


class Escalate(Body):
    reason: Annotated[str, Field(min_length=1, max_length=500)]
    question: Annotated[str, Field(max_length=4000)] | None = None
    options: Annotated[list[Annotated[str, Field(min_length=1, max_length=500)]], Field(max_length=10)] | None = None


class Decide(Body):
    decision: Annotated[str, Field(min_length=1, max_length=4000)]
    rationale: Annotated[str, Field(max_length=8000)] | None = None


class EventFilters(Query):
    project_id: Id | None = None
    bead_id: Id | None = None
    type: Annotated[str, Field(max_length=500)] | None = None
    since: Annotated[str, Field(pattern=EVENT_ID_PATTERN)] | None = None
    limit: int = Field(100, ge=1, le=1000)


class StreamFilters(Query):
    project_id: Id | None = None
    bead_id: Id | None = None
    type: Annotated[str, Field(max_length=500, description="comma-separated event types; `bead.*` matches a family")
                    ] | None = None
    since: Annotated[str, Field(pattern=EVENT_ID_PATTERN)] | None = None
    max_seconds: Annotated[float, Field(gt=0, le=86_400, description="end the stream after this many seconds")
                           ] | None = None
