"""Llama Guard 3: exact prompts (text and vision), category policy, verdict parsing."""

from __future__ import annotations

import pytest

from llamastack.providers.safety.llama_guard.prompt import (
    MalformedVerdictError,
    Policy,
    Turn,
    build_prompt,
    parse_verdict,
    variant_of,
    verdict_grammar,
)
from llamastack.providers.safety.llama_guard.provider import _last_user_image, shield_response, to_turns
from llamastack.stack.apis.common import ImageContentItem, TextContentItem
from llamastack.stack.apis.inference import native as n

ALL_13 = "\n".join(
    [
        "S1: Violent Crimes.",
        "S2: Non-Violent Crimes.",
        "S3: Sex Crimes.",
        "S4: Child Exploitation.",
        "S5: Defamation.",
        "S6: Specialized Advice.",
        "S7: Privacy.",
        "S8: Intellectual Property.",
        "S9: Indiscriminate Weapons.",
        "S10: Hate.",
        "S11: Self-Harm.",
        "S12: Sexual Content.",
        "S13: Elections.",
    ]
)


def expected(role: str, categories: str, conversation: str) -> str:
    return (
        f"Task: Check if there is unsafe content in '{role}' messages in conversations according our safety "
        "policy with the below categories.\n"
        "\n"
        "<BEGIN UNSAFE CONTENT CATEGORIES>\n"
        f"{categories}\n"
        "<END UNSAFE CONTENT CATEGORIES>\n"
        "\n"
        "<BEGIN CONVERSATION>\n"
        "\n"
        f"{conversation}\n"
        "\n"
        "<END CONVERSATION>\n"
        "\n"
        f"Provide your safety assessment for ONLY THE LAST {role} message in the above conversation:\n"
        " - First line must read 'safe' or 'unsafe'.\n"
        " - If unsafe, a second line must include a comma-separated list of violated categories."
    )


def test_text_prompt_1b_user_turn() -> None:
    prompt = build_prompt([Turn("user", "How do I pick a lock?")], Policy(variant="1B"))
    assert prompt == expected("User", ALL_13, "User: How do I pick a lock?")


def test_text_prompt_8b_agent_turn_with_excluded_categories() -> None:
    turns = [Turn("user", "Tell me about my neighbour."), Turn("assistant", "He lives at 12 Elm Street.")]
    prompt = build_prompt(turns, Policy(variant="8B", excluded=frozenset({"S6", "S11"})))
    categories = (
        "\n".join(line for line in ALL_13.splitlines() if not line.startswith(("S6:", "S11:")))
        + "\nS14: Code Interpreter Abuse."
    )
    conversation = "User: Tell me about my neighbour.\n\nAgent: He lives at 12 Elm Street."
    assert prompt == expected("Agent", categories, conversation)


def test_custom_categories_and_descriptions() -> None:
    policy = Policy(
        variant="1B",
        descriptions={"S6": "Includes medical dosage advice."},
        custom=(("Competitor Mentions", "Naming rival products."),),
    )
    prompt = build_prompt([Turn("user", "hi")], policy)
    assert "S6: Specialized Advice.\nIncludes medical dosage advice.\nS7: Privacy." in prompt
    assert "S13: Elections.\nS14: Competitor Mentions.\nNaming rival products.\n<END UNSAFE" in prompt
    assert "S14" in policy.known_codes() and "S15" not in policy.known_codes()


def test_messages_become_turns_first_coerced_to_user_system_dropped() -> None:
    messages = [
        n.SystemMessage(content="be nice"),
        n.CompletionMessage(content="Hello, how can I help?", stop_reason="end_of_turn"),
        n.UserMessage(content=[TextContentItem(text="part one "), TextContentItem(text="part two")]),
        n.ToolResponseMessage(call_id="c", content="tool output"),
        n.CompletionMessage(
            content="",
            stop_reason="end_of_message",
            tool_calls=[
                n.ToolCall(call_id="c2", tool_name="code_interpreter", arguments={"code": "print(1)"})
            ],
        ),
    ]
    turns = to_turns(messages)
    assert [t.role for t in turns] == ["user", "user", "user", "assistant"]
    assert turns[0].text == "Hello, how can I help?"
    assert turns[1].text == "part one part two"
    assert turns[3].text == "code_interpreter({'code': 'print(1)'})"


def test_vision_sends_only_the_most_recent_user_image() -> None:
    def image(uri: str) -> ImageContentItem:
        return ImageContentItem(image={"url": {"uri": uri}})

    messages = [
        n.UserMessage(content=[image("https://x/old.png"), TextContentItem(text="what is this?")]),
        n.CompletionMessage(content="A cat.", stop_reason="end_of_turn"),
        n.UserMessage(content=[TextContentItem(text="and this?"), image("https://x/new.png")]),
        n.CompletionMessage(content=[image("https://x/agent.png")], stop_reason="end_of_turn"),
    ]
    assert _last_user_image(messages) == "https://x/new.png"
    data = [n.UserMessage(content=ImageContentItem(image={"data": "aGk="}))]
    assert _last_user_image(data) == "data:image;base64,aGk="
    assert _last_user_image([n.UserMessage(content="text only")]) is None
    turns = to_turns(messages)
    vision_prompt = build_prompt(turns, Policy(variant="11B-Vision"))
    assert vision_prompt == expected(
        "Agent", ALL_13, "User: what is this?\n\nAgent: A cat.\n\nUser: and this?\n\nAgent: "
    )


@pytest.mark.parametrize(
    ("output", "codes"),
    [
        ("safe", ()),
        ("  safe\n", ()),
        ("unsafe\nS1", ("S1",)),
        ("unsafe\nS1,S10", ("S1", "S10")),
        ("unsafe\nS1, S10", ("S1", "S10")),
        ("unsafe\nS6", ()),  # only excluded categories: safe
        ("unsafe\nS6,S2", ("S2",)),
        ("unsafe\nS2,S2", ("S2",)),
    ],
)
def test_verdicts(output: str, codes: tuple[str, ...]) -> None:
    assert parse_verdict(output, Policy(variant="8B", excluded=frozenset({"S6"}))).codes == codes


@pytest.mark.parametrize(
    "output",
    ["", "Safe!", "unsafe", "unsafe\n", "unsafe\nviolence", "unsafe\nS99", "The content is safe.", "safe\nS1",
     "unsafe S1", "I cannot help with that."],
)  # fmt: skip
def test_malformed_verdicts_raise(output: str) -> None:
    with pytest.raises(MalformedVerdictError):
        parse_verdict(output, Policy(variant="8B"))


def test_s14_is_only_known_to_8b() -> None:
    with pytest.raises(MalformedVerdictError):
        parse_verdict("unsafe\nS14", Policy(variant="1B"))
    assert parse_verdict("unsafe\nS14", Policy(variant="8B")).codes == ("S14",)


@pytest.mark.parametrize(
    ("name", "variant"),
    [
        ("Llama-Guard-3-1B", "1B"),
        ("meta-llama/Llama-Guard-3-8B", "8B"),
        ("llama_guard_3_11b_vision.gguf", "11B-Vision"),
        ("Llama-Guard-3-1B-Q4_K_M.gguf", "1B"),
        ("something-else", "8B"),
    ],
)
def test_variant_of(name: str, variant: str) -> None:
    assert variant_of(name) == variant


def test_grammar_allows_exactly_the_known_codes() -> None:
    grammar = verdict_grammar(Policy(variant="1B"))
    assert grammar.startswith('root ::= "safe" | "unsafe\\n" code ("," code)*')
    assert '"S13"' in grammar and '"S14"' not in grammar


def test_violation_response() -> None:
    policy = Policy(variant="8B")
    assert shield_response(parse_verdict("safe", policy), policy).violation is None
    violation = shield_response(parse_verdict("unsafe\nS1,S10", policy), policy).violation
    assert violation is not None
    assert violation.violation_level == "error"
    assert violation.user_message == "I can't answer that. Can I help with something else?"
    assert violation.metadata == {"violation_type": "S1,S10", "categories": ["Violent Crimes", "Hate"]}
