"""A small client for OpenAI-compatible chat servers (llama.cpp's server, vLLM, Ollama, ...).

Only ``POST {base_url}/chat/completions`` is used, with temperature 0. Every request is cached
on disk by the SHA-256 of its URL and body (one JSON file per request, written atomically), so a
rerun, or a run killed half-way, asks the server only what it has not answered yet; a changed
prompt, model or server address is a new request. The API key is read from an environment
variable and is never written anywhere. Standard library only: no SDK to install.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from recsae.errors import ConfigError, RecsaeError
from recsae.io import json_text, write_json

_THINKING = re.compile(r"^\s*<think>.*?</think>\s*", re.S)
"""The reasoning block some models (Qwen3, DeepSeek-R1 and their distillations) write before the answer."""
RETRY_STATUS = (408, 409, 429, 500, 502, 503, 504)
"""HTTP statuses worth retrying (busy, rate-limited or restarting server)."""


class LlmError(RecsaeError):
    """The LLM server cannot be reached or answered something that is not a chat completion."""


@dataclass(frozen=True)
class LlmConfig:
    """Where the language model is and how to ask it."""

    base_url: str
    """API root of the server, as OpenAI's clients take it, e.g. ``http://localhost:8080/v1``
    (``/chat/completions`` is appended)."""
    model: str
    """Model name sent with each request (vLLM and Ollama need the served one; llama.cpp ignores it)."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the API key, sent as a bearer token when set (local servers need none)."""
    timeout_s: float = 120.0
    """Seconds to wait for one answer."""
    retries: int = 3
    """Further tries after a connection error, a timeout or a busy server (waiting 1, 2, 4, ... s)."""
    logprobs: bool = False
    """Ask for the answer token's log-probabilities, so that predictions are scored by AUC too
    (servers that do not return them are scored by their text answer only)."""

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"LLM server URL must start with http:// or https://, got {self.base_url!r}")
        if not self.model:
            raise ConfigError("LLM model name must not be empty")
        if self.timeout_s <= 0 or self.retries < 0:
            raise ConfigError(f"LLM timeout must be positive and retries >= 0, got {self.timeout_s}, {self.retries}")

    @property
    def endpoint(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"


class Completion(NamedTuple):
    """One answer of the server."""

    text: str
    """The message content, without a leading ``<think>...</think>`` reasoning block."""
    yes_probability: float | None
    """P("yes") / (P("yes") + P("no")) over the first answer token's top log-probabilities, when
    the request asked for them and the server returned any yes or no among them; else None."""
    cached: bool
    """Read from the cache, not asked."""


class ChatClient:
    """Chat completions with an on-disk cache (``cache_dir``; None: no cache)."""

    def __init__(self, cfg: LlmConfig, cache_dir: str | Path | None = None) -> None:
        self.cfg = cfg
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.requests_sent = 0
        """Requests that went to the server (cache hits excluded); retries count once."""
        self._count_lock = threading.Lock()  # requests go out from several threads

    def payload(self, messages: list[dict[str, str]], max_tokens: int) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.cfg.model, "messages": messages, "temperature": 0, "max_tokens": max_tokens}
        if self.cfg.logprobs:
            body.update(logprobs=True, top_logprobs=5)
        return body

    def complete(self, messages: list[dict[str, str]], max_tokens: int = 200) -> Completion:
        body = self.payload(messages, max_tokens)
        path = self._cache_path(body)
        if path is not None and path.is_file():
            try:
                return _parse(json.loads(path.read_text(encoding="utf-8")), self.cfg.endpoint, cached=True)
            except (OSError, ValueError, LlmError):
                pass  # a damaged cache entry is asked again and replaced
        answer = self._post(body)
        completion = _parse(answer, self.cfg.endpoint, cached=False)
        if path is not None:
            write_json(path, answer)
        return completion

    def _cache_path(self, body: dict[str, Any]) -> Path | None:
        if self.cache_dir is None:
            return None
        key = hashlib.sha256(json_text({"url": self.cfg.endpoint, "body": body}, indent=None).encode()).hexdigest()
        return self.cache_dir / key[:2] / f"{key}.json"

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.cfg.api_key_env) if self.cfg.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        data = json_text(body, indent=None).encode()
        with self._count_lock:
            self.requests_sent += 1
        for attempt in range(self.cfg.retries + 1):
            last = attempt == self.cfg.retries
            try:
                request = urllib.request.Request(self.cfg.endpoint, data=data, headers=headers, method="POST")
                with urllib.request.urlopen(request, timeout=self.cfg.timeout_s) as response:
                    raw = response.read()
            except urllib.error.HTTPError as err:
                detail = err.read()[:300].decode("utf-8", "replace")
                if err.code in RETRY_STATUS and not last:
                    time.sleep(2.0**attempt)
                    continue
                raise LlmError(f"{self.cfg.endpoint}: HTTP {err.code} {err.reason}: {detail}") from err
            except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
                if not last:
                    time.sleep(2.0**attempt)
                    continue
                reason = getattr(err, "reason", err)
                raise LlmError(f"cannot reach the LLM server at {self.cfg.endpoint} ({reason}); start it or give "
                               "its address (--llm-url, e.g. http://localhost:8080/v1)") from err
            try:
                answer = json.loads(raw)
            except ValueError as err:
                raise LlmError(f"{self.cfg.endpoint}: the answer is not JSON ({raw[:120]!r}); expected an "
                               "OpenAI chat completion") from err
            if not isinstance(answer, dict):
                raise LlmError(f"{self.cfg.endpoint}: expected a JSON object (an OpenAI chat completion)")
            return answer
        raise AssertionError("unreachable")  # the last attempt returns or raises


def _parse(answer: dict[str, Any], endpoint: str, cached: bool) -> Completion:
    try:
        choice = answer["choices"][0]
        text = choice["message"]["content"]
    except (KeyError, IndexError, TypeError) as err:
        raise LlmError(f"{endpoint}: the answer has no choices[0].message.content (expected an OpenAI chat "
                       f"completion): {json.dumps(answer)[:200]}") from err
    if not isinstance(text, str):
        raise LlmError(f"{endpoint}: choices[0].message.content is {type(text).__name__}, expected text")
    return Completion(_THINKING.sub("", text, count=1), _yes_probability(choice.get("logprobs")), cached)


def _yes_probability(logprobs: Any) -> float | None:
    """From ``logprobs.content[0].top_logprobs`` (OpenAI's format): the share of "yes" in the
    probability of "yes" and "no", over tokens that read as either after stripping and lower-casing."""
    try:
        top = logprobs["content"][0]["top_logprobs"]
        mass = {"yes": 0.0, "no": 0.0}
        for entry in top:
            word = str(entry["token"]).strip().lower()
            if word in mass:
                mass[word] += math.exp(float(entry["logprob"]))
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    total = mass["yes"] + mass["no"]
    return mass["yes"] / total if total > 0 else None
