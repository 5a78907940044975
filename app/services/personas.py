"""Personas: parse the shipped Markdown files (YAML front matter + instructions) and keep them in the DB."""
from __future__ import annotations

import re
from pathlib import Path

import yaml
from sqlalchemy import select

from app.extensions import db
from app.models import Persona
from app.services import paging
from app.services.errors import NotFound, ValidationError

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "personas"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_FRONT = re.compile(r"\A---\s*\n(.*?)\n---\s*\n?(.*)\Z", re.DOTALL)


def parse_persona_markdown(text: str, default_name: str) -> dict:
    """Split `---` YAML front matter from the Markdown body; returns the Persona fields."""
    match = _FRONT.match(text)
    meta: dict = {}
    body = text
    if match:
        loaded = yaml.safe_load(match.group(1)) or {}
        if not isinstance(loaded, dict):
            raise ValueError("front matter must be a mapping")
        meta, body = loaded, match.group(2)
    name = str(meta.pop("name", default_name))
    return {
        "name": name,
        "title": str(meta.pop("title", name.replace("-", " ").title())),
        "role": str(meta.pop("role", "")),
        "description": str(meta.pop("description", "")),
        "instructions": body.strip() + "\n",
        "meta": meta,
    }


def load_builtin_personas(directory: Path = BUILTIN_DIR) -> list[str]:
    """Insert shipped personas that are not in the database yet; never overwrite a user's edits."""
    existing = set(db.session.scalars(select(Persona.name)).all())
    added = []
    for path in sorted(directory.glob("*.md")):
        fields = parse_persona_markdown(path.read_text(encoding="utf-8"), path.stem)
        if fields["name"] in existing:
            continue
        db.session.add(Persona(builtin=True, **fields))
        added.append(fields["name"])
    db.session.commit()
    return added


def get_persona(name: str) -> Persona:
    persona = db.session.get(Persona, name)
    if persona is None:
        raise NotFound(f"persona {name!r} not found", "name")
    return persona


def list_personas() -> list[Persona]:
    return list(db.session.scalars(select(Persona).order_by(Persona.name)).all())


def page_personas(*, limit: int, offset: int) -> tuple[list[Persona], int]:
    """One window of the personas by name, and how many there are."""
    return paging.page(select(Persona), Persona.name, limit=limit, offset=offset)


def triage_persona() -> str | None:
    """The persona auto-blocked beads go to: one marked `triage: true`, else cto, else engineering-manager."""
    personas = list_personas()
    for persona in personas:
        if (persona.meta or {}).get("triage"):
            return persona.name
    names = {p.name for p in personas}
    return next((n for n in ("cto", "engineering-manager") if n in names), None)


def put_persona(name: str, fields: dict) -> tuple[Persona, bool]:
    """Create or replace a persona's editable fields. Returns (persona, created)."""
    if not NAME_RE.match(name):
        raise ValidationError("persona names are 1-64 lowercase letters, digits and dashes", "name")
    persona = db.session.get(Persona, name)
    created = persona is None
    if created:
        if not (fields.get("instructions") or "").strip():
            raise ValidationError("instructions are required for a new persona", "instructions")
        persona = Persona(name=name, title=fields.get("title") or name.replace("-", " ").title(), meta={})
        db.session.add(persona)
    elif fields.get("instructions") is not None and not fields["instructions"].strip():
        raise ValidationError("instructions must not be empty: they are the persona's system prompt", "instructions")
    for key in ("title", "role", "description", "instructions"):
        if fields.get(key) is not None:
            persona.__setattr__(key, fields[key])
    if fields.get("hints") is not None:
        persona.meta = {**(persona.meta or {}), "hints": list(fields["hints"])}
    db.session.commit()
    return persona, created
