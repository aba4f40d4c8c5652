"""Versioned prompt templates: sandboxed Jinja parts, typed variables, layers and suites.

A prompt is a ``PromptTemplate`` (parts such as ``system`` and ``refusal``, declared
variables). Layers (global → tenant → client) are merged by ``resolve`` into the
``EffectivePrompt`` a request renders. ``load_repo_prompt`` reads ``prompts/<name>/``;
``load_suite``/``check_case`` run the regression suites of ``prompts/suites/``.
"""

from __future__ import annotations

from core.prompts.assembly import system_message
from core.prompts.errors import PromptInvalid, PromptRenderError
from core.prompts.repo import load_repo_prompt, repo_prompt_names
from core.prompts.resolution import EffectivePrompt, PromptLayer, diff, global_layer, resolve
from core.prompts.suite import (
    CaseOutcome,
    Expectation,
    PromptSuite,
    SuiteCase,
    check_case,
    load_suite,
    load_suites,
)
from core.prompts.template import PromptTemplate
from core.prompts.variables import (
    BUILTIN_VARIABLES,
    MODEL_PARTS,
    PART_NAMES,
    VariableSpec,
    VariableType,
)

__all__ = [
    "BUILTIN_VARIABLES",
    "MODEL_PARTS",
    "PART_NAMES",
    "CaseOutcome",
    "EffectivePrompt",
    "Expectation",
    "PromptInvalid",
    "PromptLayer",
    "PromptRenderError",
    "PromptSuite",
    "PromptTemplate",
    "SuiteCase",
    "VariableSpec",
    "VariableType",
    "check_case",
    "diff",
    "global_layer",
    "load_repo_prompt",
    "load_suite",
    "load_suites",
    "repo_prompt_names",
    "resolve",
    "system_message",
]
