"""Inheritance: global → tenant → client layers, the version chain, and diffs."""

from __future__ import annotations

import re
from typing import Any

import pytest

from core.prompts import (
    PromptInvalid,
    PromptLayer,
    PromptTemplate,
    VariableSpec,
    diff,
    global_layer,
    resolve,
)

GLOBAL = PromptTemplate.from_document(
    {
        "parts": {
            "system": "You help {{ organisation }} staff. Ref {{ canary }}",
            "refusal": "{{ organisation }} cannot help with that.",
            "welcome": "Welcome to {{ organisation }}.",
        },
        "variables": {"organisation": {"type": "str", "default": "Northwind"}},
    }
)


def layer(
    scope: Any, label: str, number: int, document: dict[str, Any], **inherited: VariableSpec
) -> PromptLayer:
    template = PromptTemplate.from_document(document, inherited=inherited or None)
    return PromptLayer(scope, label, f"pv_{label.replace(':', '_')}_{number}", number, template)


def test_a_client_that_overrides_only_the_system_part_inherits_the_rest() -> None:
    client = layer("client", "client:acme/portal", 3, {"parts": {"system": "Portal helper."}})
    prompt = resolve([global_layer(GLOBAL), client])
    assert prompt.render("system", {"canary": "C"}) == "Portal helper."
    assert prompt.render("refusal", {}) == "Northwind cannot help with that."
    assert prompt.render("welcome", {}) == "Welcome to Northwind."
    assert prompt.version == "pv_client_acme/portal_3"


def test_the_chain_is_recorded_global_first() -> None:
    base = global_layer(GLOBAL)
    tenant = layer("tenant", "tenant:acme", 2, {"parts": {"welcome": "Hi from Acme."}})
    client = layer("client", "client:acme/portal", 5, {"parts": {"system": "Portal."}})
    prompt = resolve([base, tenant, client])
    assert prompt.chain == (
        {"scope": "global", "label": "global", "version_id": base.version_id, "number": 0},
        {"scope": "tenant", "label": "tenant:acme", "version_id": tenant.version_id, "number": 2},
        {
            "scope": "client",
            "label": "client:acme/portal",
            "version_id": client.version_id,
            "number": 5,
        },
    )
    assert prompt.render("welcome", {}) == "Hi from Acme."
    assert prompt.render("system", {}) == "Portal."


def test_a_client_may_use_a_variable_only_its_tenant_declares() -> None:
    tenant = layer(
        "tenant",
        "tenant:acme",
        1,
        {
            "parts": {"escalation": "Call the desk at {{ desk }}."},
            "variables": {"desk": {"type": "str", "default": "ext. 4100"}},
        },
    )
    client_document = {"parts": {"welcome": "Portal of {{ organisation }}; desk {{ desk }}."}}
    # Saved on its own the client's use of 'desk' is undeclared; with what it inherits, fine.
    with pytest.raises(PromptInvalid, match="undeclared variable 'desk'"):
        PromptTemplate.from_document(client_document)
    client = layer(
        "client",
        "client:acme/portal",
        1,
        client_document,
        **{**GLOBAL.variables, **tenant.template.variables},
    )
    prompt = resolve([global_layer(GLOBAL), tenant, client])
    assert prompt.render("welcome", {}) == "Portal of Northwind; desk ext. 4100."
    assert prompt.render("escalation", {"desk": "ext. 9"}) == "Call the desk at ext. 9."
    # Without the tenant layer the merged template does not declare 'desk': refused.
    with pytest.raises(PromptInvalid) as caught:
        resolve([global_layer(GLOBAL), client])
    assert "global → client:acme/portal: part 'welcome'" in caught.value.detail
    assert "undeclared variable 'desk'" in caught.value.detail


def test_a_later_layer_variable_wins() -> None:
    tenant = layer(
        "tenant",
        "tenant:acme",
        1,
        {
            "parts": {"welcome": "Hello from {{ organisation }}!"},
            "variables": {"organisation": {"type": "str", "default": "Acme Corp"}},
        },
    )
    prompt = resolve([global_layer(GLOBAL), tenant])
    assert prompt.render("welcome", {}) == "Hello from Acme Corp!"
    assert prompt.render("refusal", {}) == "Acme Corp cannot help with that."
    assert prompt.template.variables["organisation"].default == "Acme Corp"


def test_a_layer_may_change_only_a_variable_default() -> None:
    tenant = layer(
        "tenant",
        "tenant:acme",
        4,
        {"variables": {"organisation": {"type": "str", "default": "Acme"}}},
    )
    assert tenant.template.parts == {}
    prompt = resolve([global_layer(GLOBAL), tenant])
    assert prompt.render("welcome", {}) == "Welcome to Acme."
    with pytest.raises(PromptInvalid, match="at least one part or variable"):
        PromptTemplate.from_document({"parts": {}, "variables": {}})


def test_a_redeclared_type_that_breaks_an_inherited_part_is_refused_at_resolve() -> None:
    base = PromptTemplate.from_document(
        {
            "parts": {"system": "{% for t in topics %}- {{ t }}\n{% endfor %}"},
            "variables": {"topics": {"type": "list[str]", "default": ["IT"]}},
        }
    )
    tenant = layer(
        "tenant",
        "tenant:acme",
        1,
        {"parts": {"welcome": "Hi"}, "variables": {"topics": {"type": "int", "default": 3}}},
    )
    with pytest.raises(PromptInvalid, match=r"part 'system'.*sample values failed"):
        resolve([global_layer(base), tenant])


def test_layers_must_start_with_global_and_keep_their_order() -> None:
    tenant = layer("tenant", "tenant:acme", 1, {"parts": {"welcome": "Hi"}})
    client = layer("client", "client:acme/p", 1, {"parts": {"welcome": "Yo"}})
    with pytest.raises(ValueError, match="global layer first"):
        resolve([tenant])
    with pytest.raises(ValueError, match="global layer first"):
        resolve([])
    with pytest.raises(ValueError, match="ordered global, tenant, client"):
        resolve([global_layer(GLOBAL), client, tenant])
    with pytest.raises(ValueError, match="ordered global, tenant, client"):
        resolve([global_layer(GLOBAL), tenant, tenant])


def test_the_global_layer_must_have_a_system_part() -> None:
    only_welcome = PromptTemplate.from_document({"parts": {"welcome": "Hi"}})
    with pytest.raises(PromptInvalid, match="must define the 'system' part"):
        resolve([global_layer(only_welcome)])


def test_parts_a_prompt_lacks_are_key_errors() -> None:
    prompt = resolve([global_layer(GLOBAL)])
    assert prompt.has("system")
    assert not prompt.has("developer")
    with pytest.raises(KeyError):
        prompt.render("developer", {})
    with pytest.raises(KeyError):
        prompt.render("footer", {})


def test_the_repo_layer_version_is_a_content_hash() -> None:
    version = global_layer(GLOBAL).version_id
    assert re.fullmatch(r"global@[0-9a-f]{12}", version)
    assert global_layer(GLOBAL).version_id == version
    changed = PromptTemplate.from_document(
        {**GLOBAL.to_document(), "parts": {"system": "Other {{ organisation }}"}}
    )
    assert global_layer(changed).version_id != version


def test_diff_shows_changed_parts_and_variables_with_labels() -> None:
    newer = PromptTemplate.from_document(
        {
            "parts": {
                "system": "You help {{ organisation }} staff kindly. Ref {{ canary }}",
                "refusal": "{{ organisation }} cannot help with that.",
                "developer": "Be brief.",
            },
            "variables": {
                "organisation": {"type": "str", "default": "Northwind"},
                "tone": {"type": "str", "default": "warm"},
            },
        }
    )
    text = diff(GLOBAL, newer, "v1", "v2")
    assert "--- v1/system\n+++ v2/system\n" in text
    assert "-You help {{ organisation }} staff. Ref {{ canary }}\n" in text
    assert "+You help {{ organisation }} staff kindly. Ref {{ canary }}\n" in text
    assert "--- /dev/null\n+++ v2/developer\n" in text
    assert "--- v1/welcome\n+++ /dev/null\n" in text
    assert "v1/refusal" not in text  # unchanged parts are left out
    assert "--- v1/variables\n+++ v2/variables\n" in text
    assert '+  "tone": {' in text
    assert diff(GLOBAL, GLOBAL, "v1", "v1") == ""
