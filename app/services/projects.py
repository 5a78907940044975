"""Projects: create (with a default team of agents), read, update, delete."""
from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

from sqlalchemy import func, select

from app.extensions import db
from app.models import GIT_STRATEGIES, Agent, Persona, Project
from app.services import public_addresses, workspace, workspace_cleanup
from app.services.errors import Conflict, Forbidden, NotFound, ValidationError

log = logging.getLogger("loom.projects")

_BRANCH = re.compile(r"^(?![/.-])(?!.*\.\.)(?!.*//)(?!.*/[.-])[A-Za-z0-9._/-]{1,100}(?<![/.])(?<!\.lock)$")
_URL = re.compile(r"^(https?|ssh|git|file)://\S+$|^[\w.-]+@[\w.-]+:\S+$")


def get_project(project_id: int, field: str = "id") -> Project:
    project = db.session.get(Project, project_id)
    if project is None:
        raise NotFound(f"project {project_id} not found", field)
    return project


def _repository_host(repo: str) -> tuple[str, int] | None:
    """(host, port) of a git URL (http, https, git, ssh, or scp-like user@host:path); None for a local one."""
    scp = re.match(r"^[\w.-]+@([\w.-]+):", repo)
    if scp:
        return scp.group(1), 22
    parts = urlsplit(repo)
    if parts.scheme in ("", "file"):
        return None
    try:
        port = parts.port
    except ValueError:
        raise ValidationError("git_repo: its port is not a number from 0 to 65535", "git_repo") from None
    return parts.hostname or "", port or {"http": 80, "https": 443, "git": 9418, "ssh": 22}[parts.scheme]


def _check_reach(repo: str) -> None:
    """For a user who does not run the installation: no path on the server (another project's repository, or any
    other) and no address inside its network (the clone is made by a worker)."""
    where = _repository_host(repo)
    if where is None:
        raise Forbidden("git_repo: only an admin may point a project at a repository on the server's disk",
                        "git_repo")
    private = public_addresses.first_private(*where)
    if private is not None:
        raise Forbidden(f"git_repo: {where[0]} is a private or local address ({private}); only an admin may point a "
                        "project at one", "git_repo")


def _check_fields(fields: dict, trusted: bool = True) -> None:
    if "name" in fields:
        name = (fields["name"] or "").strip()
        if not name:
            raise ValidationError("name must not be empty", "name")
        fields["name"] = name
    if fields.get("git_strategy") is not None and fields["git_strategy"] not in GIT_STRATEGIES:
        raise ValidationError(f"git_strategy must be one of {', '.join(GIT_STRATEGIES)}", "git_strategy")
    if fields.get("default_branch") is not None and not _BRANCH.match(fields["default_branch"]):
        raise ValidationError("default_branch is not a valid git branch name", "default_branch")
    repo = fields.get("git_repo")
    if repo is not None:
        repo = repo.strip()
        if "\x00" in repo or (not repo.startswith("/") and not _URL.match(repo)):
            raise ValidationError("git_repo must be an absolute local path or a git URL", "git_repo")
        if repo and not trusted:
            _check_reach(repo)
        if repo.startswith("/") and (problem := workspace.local_repository_problem(repo)):
            raise ValidationError(f"git_repo: {problem}", "git_repo")
        fields["git_repo"] = repo or None
    if fields.get("max_concurrent") is not None and fields["max_concurrent"] < 1:
        raise ValidationError("max_concurrent must be at least 1", "max_concurrent")


def _name_taken(name: str, except_id: int | None = None) -> bool:
    query = select(func.count()).select_from(Project).where(func.lower(Project.name) == name.lower())
    if except_id is not None:
        query = query.where(Project.id != except_id)
    return bool(db.session.scalar(query))


def create_project(name: str, *, description: str = "", git_repo: str | None = None,
                   default_branch: str = "main", git_strategy: str = "branch", dedicated: bool = False,
                   max_concurrent: int | None = None, team: list[str] | None = None, trusted: bool = True) -> Project:
    """Create a project and its default team: one agent per persona in `team` that exists. `trusted`: the caller
    runs the installation (an admin), so git_repo may be a local path or an address inside its network."""
    fields = {"name": name, "description": description or "", "git_repo": git_repo,
              "default_branch": default_branch, "git_strategy": git_strategy, "dedicated": dedicated,
              "max_concurrent": max_concurrent}
    _check_fields(fields, trusted)
    if _name_taken(fields["name"]):
        raise Conflict(f"a project named {fields['name']!r} already exists", "name", code="exists")
    project = Project(**fields)
    db.session.add(project)
    db.session.flush()
    for persona_name in team or []:
        persona = db.session.get(Persona, persona_name)
        if persona is not None:
            db.session.add(Agent(name=persona.title, persona=persona.name, role=persona.role,
                                 project_id=project.id, status="idle"))
    db.session.commit()
    return project


def list_projects(limit: int = 50, offset: int = 0) -> tuple[list[Project], int]:
    total = db.session.scalar(select(func.count()).select_from(Project))
    items = db.session.scalars(select(Project).order_by(Project.id).limit(limit).offset(offset)).all()
    return list(items), int(total or 0)


def update_project(project_id: int, changes: dict, trusted: bool = True) -> Project:
    project = get_project(project_id)
    changes = dict(changes)
    _check_fields(changes, trusted)
    if "name" in changes and _name_taken(changes["name"], except_id=project_id):
        raise Conflict(f"a project named {changes['name']!r} already exists", "name", code="exists")
    for key, value in changes.items():
        setattr(project, key, value)
    db.session.commit()
    return project


def delete_project(project_id: int, data_dir: str | None = None) -> None:
    """Delete a project with its beads and agents (the database cascades); with `data_dir`, its folder (repository
    and worktrees) is moved aside to <data_dir>/deleted/, so a project created later never starts from it."""
    project = get_project(project_id)
    db.session.delete(project)
    db.session.commit()
    if data_dir is not None:
        try:
            workspace_cleanup.set_aside_project_folder(data_dir, project_id)
        except OSError as exc:  # the rows are gone either way: say where the folder stayed
            log.error("project %s deleted, its folder %s not moved aside: %s", project_id,
                      workspace.project_dir(data_dir, project_id), exc)
