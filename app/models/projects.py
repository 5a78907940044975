"""Projects: a git repository that a team of agents works on."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.extensions import db
from app.models.base import UTCDateTime, iso, utcnow

GIT_STRATEGIES = ("direct", "branch")


class Project(db.Model):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True, nullable=False)
    description: Mapped[str] = mapped_column(Text, default="", nullable=False)
    git_repo: Mapped[str | None] = mapped_column(String(1000))  # None: a new local repository
    default_branch: Mapped[str] = mapped_column(String(100), default="main", nullable=False)
    git_strategy: Mapped[str] = mapped_column(String(20), default="branch", nullable=False)
    dedicated: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)  # own Celery queue
    max_concurrent: Mapped[int | None] = mapped_column(Integer)  # None: the global default
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow, nullable=False)

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "git_repo": self.git_repo,
            "default_branch": self.default_branch,
            "git_strategy": self.git_strategy,
            "dedicated": self.dedicated,
            "max_concurrent": self.max_concurrent,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }
