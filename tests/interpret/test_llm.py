"""The OpenAI-compatible client: requests, cache, retries and clear errors, against a local server."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from fake_llm import fake_llm
from recsae.errors import ConfigError
from recsae.interpret import llm as llm_module
from recsae.interpret.llm import ChatClient, LlmConfig, LlmError

ASK = [{"role": "user", "content": "Histories where the feature fires most:\nWords and attributes most specific "
        "to the items of these histories: zebra, yak\n"}]


@pytest.fixture(autouse=True)
def _no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llm_module.time, "sleep", lambda s: None)


def test_request_is_a_temperature_zero_chat_completion_at_the_api_root() -> None:
    with fake_llm() as srv:
        answer = ChatClient(LlmConfig(srv.url, "m1")).complete(ASK, max_tokens=7)
    assert answer.text == "Histories with zebra." and not answer.cached and answer.yes_probability is None
    (req,) = srv.requests
    assert req["path"] == "/v1/chat/completions"
    assert req["payload"] == {"model": "m1", "messages": ASK, "temperature": 0, "max_tokens": 7}
    assert req["authorization"] is None


def test_api_key_is_sent_from_its_environment_variable_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_KEY", "s3cret")
    with fake_llm() as srv:
        ChatClient(LlmConfig(srv.url, "m", api_key_env="MY_KEY")).complete(ASK)
    assert srv.requests[0]["authorization"] == "Bearer s3cret"


def test_cache_answers_a_repeated_request_without_the_server(tmp_path: Path) -> None:
    with fake_llm() as srv:
        first = ChatClient(LlmConfig(srv.url, "m"), tmp_path).complete(ASK)
        again = ChatClient(LlmConfig(srv.url, "m"), tmp_path)
        second = again.complete(ASK)
        assert len(srv.requests) == 1 and again.requests_sent == 0
        assert second.cached and second.text == first.text
        ChatClient(LlmConfig(srv.url, "other-model"), tmp_path).complete(ASK)  # another model: another request
        assert len(srv.requests) == 2
    assert not list(tmp_path.rglob("*.tmp"))


def test_damaged_cache_entry_is_asked_again(tmp_path: Path) -> None:
    with fake_llm() as srv:
        ChatClient(LlmConfig(srv.url, "m"), tmp_path).complete(ASK)
        (entry,) = tmp_path.rglob("*.json")
        entry.write_text("{broken")
        assert ChatClient(LlmConfig(srv.url, "m"), tmp_path).complete(ASK).text == "Histories with zebra."
        assert len(srv.requests) == 2
    assert json.loads(entry.read_text())["choices"][0]["message"]["content"] == "Histories with zebra."


def test_busy_server_is_retried_then_answers() -> None:
    with fake_llm(fail_first=2) as srv:
        client = ChatClient(LlmConfig(srv.url, "m", retries=3))
        assert client.complete(ASK).text == "Histories with zebra."
    assert len(srv.requests) == 3 and client.requests_sent == 1


def test_server_busy_beyond_the_retries_is_an_error_naming_the_status() -> None:
    with fake_llm(fail_first=10) as srv, pytest.raises(LlmError, match="HTTP 503"):
        ChatClient(LlmConfig(srv.url, "m", retries=1)).complete(ASK)
    assert len(srv.requests) == 2


def test_unreachable_server_is_an_error_naming_its_address() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    url = f"http://127.0.0.1:{port}/v1"
    with pytest.raises(LlmError, match=f"cannot reach the LLM server at {url}/chat/completions"):
        ChatClient(LlmConfig(url, "m", retries=1)).complete(ASK)


@pytest.mark.parametrize(("body", "message"), [
    (b"<html>oops</html>", "not JSON"),
    (b'{"choices": []}', r"no choices\[0\].message.content"),
    (b'["a list"]', "expected a JSON object"),
])
def test_answer_that_is_not_a_chat_completion_is_an_error(body: bytes, message: str) -> None:
    with fake_llm(body=body) as srv, pytest.raises(LlmError, match=message):
        ChatClient(LlmConfig(srv.url, "m")).complete(ASK)


def test_wrong_path_is_an_error_with_the_status() -> None:
    with fake_llm() as srv, pytest.raises(LlmError, match="HTTP 404"):
        ChatClient(LlmConfig(srv.url.removesuffix("/v1"), "m")).complete(ASK)


def test_yes_probability_is_read_from_top_logprobs() -> None:
    score = [{"role": "user", "content": "Explanation of the feature: Histories with zebra.\n\nHistory: Zebra a -> x\n\n?"}]
    with fake_llm() as srv:
        answer = ChatClient(LlmConfig(srv.url, "m", logprobs=True)).complete(score)
    assert srv.requests[0]["payload"]["logprobs"] is True and srv.requests[0]["payload"]["top_logprobs"] == 5
    assert answer.text == "yes" and answer.yes_probability == pytest.approx(0.9)


def test_yes_probability_is_none_without_yes_or_no_among_the_tokens() -> None:
    assert llm_module._yes_probability({"content": [{"top_logprobs": [{"token": "maybe", "logprob": 0.0}]}]}) is None
    assert llm_module._yes_probability(None) is None


@pytest.mark.parametrize("kwargs", [{"base_url": "localhost:8080"}, {"model": ""}, {"timeout_s": 0}, {"retries": -1}])
def test_bad_config_is_refused(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        LlmConfig(**{"base_url": "http://x/v1", "model": "m", **kwargs})


def test_a_leading_reasoning_block_is_dropped_from_the_answer() -> None:
    body = json.dumps({"choices": [{"message": {"content": "<think>\nIt says yes... or not?\n</think>\n\nNo."}}]})
    with fake_llm(body=body.encode()) as srv:
        assert ChatClient(LlmConfig(srv.url, "m")).complete(ASK).text == "No."
