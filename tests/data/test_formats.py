"""Turn rules (by role), format detection, problem sentences and record conversion."""

from __future__ import annotations

import pytest

from deita.data.formats import FILE_TYPES, FORMATS, convert_record, detect_format, file_type_of, parse_turns
from deita.data.records import Turn


def sg(*msgs: tuple[str, object], **extra: object) -> dict:
    return {"conversations": [{"from": r, "value": v} for r, v in msgs], **extra}


def test_constants() -> None:
    assert FORMATS == ("sharegpt", "alpaca", "messages")
    assert FILE_TYPES == ("json", "jsonl", "parquet", "dataset")


@pytest.mark.parametrize(
    ("raw", "fmt"),
    [(sg(("human", "x")), "sharegpt"), ({"messages": []}, "messages"), ({"instruction": "x"}, "alpaca")],
)
def test_detect_format(raw: dict, fmt: str) -> None:
    assert detect_format(raw) == fmt


def test_detect_format_unknown() -> None:
    with pytest.raises(ValueError, match="cannot tell the record format.*'text'"):
        detect_format({"text": "hello"})


def test_file_type_of(tmp_path) -> None:
    assert [file_type_of(tmp_path / f"a{s}") for s in (".json", ".jsonl", ".parquet", ".JSONL")] == [
        "json", "jsonl", "parquet", "jsonl",
    ]  # fmt: skip
    assert file_type_of(tmp_path / "new_dataset") == "dataset"
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "state.json").write_text("{}")
    assert file_type_of(tmp_path / "ds") == "dataset"


def test_role_pairing_and_aliases() -> None:
    raw = sg(
        ("user", "q1"), ("chatgpt", "a1"), ("human", "q2"), ("bing", "a2"), ("Human", "q3"), ("bard", "a3")
    )
    assert parse_turns(raw, "sharegpt") == ([Turn("q1", "a1"), Turn("q2", "a2"), Turn("q3", "a3")], None, 0)


def test_leading_assistant_skipped_and_counted_trailing_human_gets_empty_response() -> None:
    raw = sg(
        ("gpt", "end of an earlier part"),
        ("assistant", "more"),
        ("human", "q1"),
        ("gpt", "a1"),
        ("human", "q2"),
    )
    assert parse_turns(raw, "sharegpt") == ([Turn("q1", "a1"), Turn("q2", "")], None, 2)


def test_system_kept_aside() -> None:
    turns, system, skipped = parse_turns(sg(("system", "be brief"), ("human", "q"), ("gpt", "a")), "sharegpt")
    assert (turns, system, skipped) == ([Turn("q", "a")], "be brief", 0)
    raw = {"messages": [{"role": "system", "content": ""}, {"role": "user", "content": "q"}]}
    assert parse_turns(raw, "messages") == ([Turn("q", "")], None, 0)  # an empty system prompt is no system


def test_positional_pairing_reproduces_reference_toolkit() -> None:
    raw = sg(("gpt", "g0"), ("human", "h1"), ("gpt", "g2"))
    assert parse_turns(raw, "sharegpt", pairing="positional") == ([Turn("g0", "h1"), Turn("g2", "")], None, 0)
    assert parse_turns(raw, "sharegpt") == ([Turn("h1", "g2")], None, 1)


def test_alpaca_turn() -> None:
    assert parse_turns({"instruction": "Sum", "input": "1 2", "output": "3"}, "alpaca") == (
        [Turn("Sum\n1 2", "3")],
        None,
        0,
    )
    assert parse_turns({"instruction": "Hi", "input": ""}, "alpaca") == ([Turn("Hi", "")], None, 0)


def test_messages_format() -> None:
    raw = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    assert parse_turns(raw, "messages") == ([Turn("q", "a")], None, 0)


@pytest.mark.parametrize(
    ("raw", "fmt", "problem"),
    [
        ({"id": 1}, "sharegpt", "missing 'conversations'"),
        ({"id": 1}, "messages", "missing 'messages'"),
        ({"input": "x"}, "alpaca", "missing 'instruction'"),
        ({"conversations": "hi"}, "sharegpt", "'conversations' is a string, expected an array"),
        ({"conversations": ["hi"]}, "sharegpt", "message 1 is a string, expected an object"),
        (
            sg(("human", "q"), ("gpt", "a"), ("robot", "beep")),
            "sharegpt",
            "message 3 has unknown role 'robot' (expected human/user, gpt/assistant/chatgpt/bing/bard, system)",
        ),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages", "message 1 has unknown role 'tool' (expected user, assistant, system)"),
        (sg(("human", 5)), "sharegpt", "message 1 'value' is a number, expected a string"),
        (sg(("human", None)), "sharegpt", "message 1 'value' is null, expected a string"),
        ({"conversations": [{"value": "x"}]}, "sharegpt", "message 1 has no 'from'"),
        ({"instruction": "x", "output": ["a"]}, "alpaca", "'output' is an array, expected a string"),
        ({"instruction": " "}, "alpaca", "'instruction' is empty"),
        (sg(("human", "q"), ("gpt", " \n")), "sharegpt", "message 2 (gpt) is empty (whitespace-only 'value')"),
        (sg(("human", "q"), ("human", "q again"), ("gpt", "a")), "sharegpt", "messages 1 and 2 are both from the user (human, human)"),
        (sg(("human", "q"), ("gpt", "a"), ("gpt", "a2")), "sharegpt", "messages 2 and 3 are both from the assistant"),
        (sg(("human", "q"), ("gpt", "a"), ("system", "s")), "sharegpt", "message 3 is a system message inside"),
        (sg(), "sharegpt", "no turns: the conversation has no user message"),
        (sg(("gpt", "only an answer")), "sharegpt", "no turns: the conversation has no user message"),
        (sg(("system", "only a prompt")), "sharegpt", "no turns: the conversation has no user message"),
    ],
)  # fmt: skip
def test_problems(raw: dict, fmt: str, problem: str) -> None:
    with pytest.raises(ValueError) as e:
        parse_turns(raw, fmt)
    assert problem in str(e.value)


def test_convert_sharegpt_alpaca_round_trip_is_identical() -> None:
    raw = {
        "id": "x1",
        "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}],
        "source": "s",
    }
    alpaca = convert_record(raw, "sharegpt", "alpaca")
    assert alpaca == {"id": "x1", "instruction": "q", "input": "", "output": "a", "source": "s"}
    assert list(alpaca) == ["id", "instruction", "input", "output", "source"]
    back = convert_record(alpaca, "alpaca", "sharegpt")
    assert back == raw and list(back) == list(raw)


def test_convert_keeps_system_and_unanswered_turn() -> None:
    raw = sg(("system", "be brief"), ("human", "q"), id=3)
    alpaca = convert_record(raw, "sharegpt", "alpaca")
    assert alpaca == {"instruction": "q", "input": "", "output": "", "system": "be brief", "id": 3}
    assert convert_record(alpaca, "alpaca", "sharegpt") == raw


def test_convert_alpaca_input_joined() -> None:
    out = convert_record({"instruction": "Sum", "input": "1 2", "output": "3", "id": 1}, "alpaca", "messages")
    assert out == {
        "messages": [{"role": "user", "content": "Sum\n1 2"}, {"role": "assistant", "content": "3"}],
        "id": 1,
    }


def test_convert_sharegpt_messages_round_trip_keeps_message_fields() -> None:
    raw = {
        "id": 1,
        "conversations": [{"from": "human", "value": "q", "lang": "en"}, {"from": "gpt", "value": "a"}],
    }
    msgs = convert_record(raw, "sharegpt", "messages")
    assert msgs == {
        "id": 1,
        "messages": [{"role": "user", "content": "q", "lang": "en"}, {"role": "assistant", "content": "a"}],
    }
    assert convert_record(msgs, "messages", "sharegpt") == raw


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (
            sg(("human", "q"), ("gpt", "a"), ("human", "q2"), ("gpt", "a2")),
            "record has 2 turns; Alpaca holds one",
        ),
        (sg(("gpt", "earlier"), ("human", "q"), ("gpt", "a")), "starts with 1 assistant message"),
    ],
)
def test_convert_to_alpaca_refuses_what_it_cannot_hold(raw: dict, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        convert_record(raw, "sharegpt", "alpaca")
