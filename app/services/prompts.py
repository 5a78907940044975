"""What the LLM is sent: a system prompt (persona + protocol), the task (the bead), then the turns so far.

The first system message says `persona: <name>` and the first user message starts `Bead #<id>: <title>`:
scripted providers match on both, so keep these two markers stable.
"""
from __future__ import annotations

import json

from sqlalchemy import select

from app.extensions import db
from app.models import Agent, Bead, Comment, Persona, Project, Step

PROTOCOL = """## How to answer
Each turn, answer with ONE JSON object (optionally in a ```json fenced block):
{"actions": [{"type": "<action>", ...params}], "notes": "<your reasoning>"}
Actions: read_file(path), write_file(path, content), edit_file(path, old, new), list_files(path?, depth?),
search_text(query, path?), run_command(command, timeout?), git_status, git_diff, git_commit(message),
create_bead(title, description?, priority?, blocked_by?, tags?), comment(text),
escalate(reason, question?, options?), done(reason).
Paths are relative to your workspace (a git worktree on branch bead/<id>); paths outside it are refused.
After each turn you get the results as a JSON list of {"type", "status": "ok"|"error", "output"}.
Finish with done(reason) once the work is committed; escalate when a person must decide."""
RESULT_CHARS = 8_000  # per result, in the history sent back to the LLM
RESPONSE_CHARS = 16_000  # per earlier assistant reply kept in the history


def system_prompt(agent: Agent, persona: Persona, project: Project) -> str:
    return (f"You are {agent.name}, {persona.title} (persona: {persona.name}) on the project "
            f"\"{project.name}\".\n\n{persona.instructions.strip()}\n\n{PROTOCOL}\n")


def task_prompt(bead: Bead, blocked_by: list[int]) -> str:
    tags = f" · Tags: {', '.join(bead.tags)}" if bead.tags else ""
    lines = [f"Bead #{bead.id}: {bead.title}", f"Priority: P{bead.priority} · Type: {bead.type}{tags}"]
    if bead.description:
        lines += ["", bead.description.strip()]
    if bead.acceptance:
        lines += ["", f"Acceptance: the bead closes only when `{bead.acceptance}` exits 0 in your workspace."]
    if blocked_by:
        lines += ["", "Done before this bead: " + ", ".join(f"#{i}" for i in blocked_by)]
    comments = db.session.scalars(select(Comment).where(Comment.bead_id == bead.id).order_by(Comment.id)
                                  .limit(20)).all()
    if comments:
        lines += ["", "Comments (oldest first):"] + [f"- {c.author}: {c.text[:2000]}" for c in comments]
    lines += ["", "Start by looking at the workspace, then do the work, commit it, and finish with done."]
    return "\n".join(lines)


def results_message(results: list[dict]) -> str:
    """The user message that carries a turn's results back to the LLM (each output capped)."""
    capped = []
    for result in results:
        output = result.get("output", "")
        if isinstance(output, str) and len(output) > RESULT_CHARS:
            output = output[:RESULT_CHARS] + f"\n[... {len(result['output']) - RESULT_CHARS} more characters ...]"
        capped.append({**result, "output": output})
    return json.dumps(capped, ensure_ascii=False)


def pair_message(author: str | None, request: str) -> dict:
    """What a person said in pair programming, as the user message before the agent's reply to it."""
    return {"role": "user", "content": f"{author or 'someone'} (pair programming): {request}"}


def conversation(system: str, task: str, steps: list[Step]) -> list[dict]:
    """system, task, then per applied step: (for a pair turn, what the person said), the assistant's reply
    and the results that followed."""
    messages = [{"role": "system", "content": system}, {"role": "user", "content": task}]
    for step in steps:
        if step.kind == "pair":
            messages.append(pair_message(step.author, step.request))
        reply = step.response if len(step.response) <= RESPONSE_CHARS else step.response[:RESPONSE_CHARS] + "\n[...]"
        messages.append({"role": "assistant", "content": reply})
        messages.append({"role": "user", "content": results_message(step.results or [])})
    return messages
