"""Comments on a bead: by people, by agents (the `comment` action, once per step) and by decisions."""
from __future__ import annotations

from sqlalchemy import select

from app.extensions import db
from app.models import Comment
from app.services import paging
from app.services.beads import get_bead
from app.services.errors import ValidationError
from app.services.events import emit


def add_comment(bead_id: int, author: str, text: str, origin_key: str | None = None) -> Comment:
    """Comment on a bead; with an `origin_key` a repeated call returns the first comment instead."""
    bead = get_bead(bead_id)
    if not text.strip():
        raise ValidationError("text must not be empty", "text")
    if origin_key is not None:
        existing = db.session.scalar(select(Comment).where(Comment.origin_key == origin_key))
        if existing is not None:
            return existing
    comment = Comment(bead_id=bead_id, author=author, text=text, origin_key=origin_key)
    db.session.add(comment)
    db.session.commit()
    emit("bead.commented", project_id=bead.project_id, bead_id=bead_id,
         data={"author": author, "text": text[:500]})
    return comment


def list_comments(bead_id: int, limit: int = 50, offset: int = 0) -> tuple[list[Comment], int]:
    get_bead(bead_id)
    query = select(Comment).where(Comment.bead_id == bead_id)
    return paging.page(query, Comment.id, limit=limit, offset=offset)
