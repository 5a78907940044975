"""Loom's built-in scripted LLM provider: an OpenAI-compatible HTTP server that answers from a script.

`make run` serves DEMO_SCRIPT; tests and benchmarks serve their own scripts. Stdlib + PyYAML only, and
nothing from the rest of `app`, so it can run as a separate process: `python -m app.scripted_llm`.
"""
from __future__ import annotations

from pathlib import Path

from app.scripted_llm.loading import load_script
from app.scripted_llm.script import Fault, Match, RequestContext, Rule, Script
from app.scripted_llm.server import ScriptedLLMServer

DEMO_SCRIPT = Path(__file__).with_name("demo.yaml")

__all__ = ["DEMO_SCRIPT", "Fault", "Match", "RequestContext", "Rule", "Script", "ScriptedLLMServer",
           "load_script"]
