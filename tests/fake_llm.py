"""A local OpenAI-compatible chat server for tests: a keyword explainer with known answers.

Asked to explain (a prompt with the keywords line), it answers "Histories with <first keyword>.";
asked to score (an explanation and a history), it answers "yes" exactly when that keyword occurs
in the history's text. So an explanation is as good as its first keyword, which the tests plant.
"""

from __future__ import annotations

import http.server
import json
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from recsae.interpret.explain import EXPLANATION_LEAD, HISTORY_LEAD, KEYWORDS_LEAD


@dataclass
class FakeLlm:
    """What the server saw and how it misbehaves."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    fail_first: int = 0
    """Answer the first this many requests with HTTP 503."""
    body: bytes | None = None
    """Answer every request with these bytes instead."""

    def answer(self, payload: dict[str, Any]) -> str:
        text = payload["messages"][-1]["content"]
        if KEYWORDS_LEAD in text:
            words = text.split(KEYWORDS_LEAD, 1)[1].splitlines()[0].strip()
            return f"Histories with {words.split(', ')[0]}."
        if EXPLANATION_LEAD in text:
            explanation = text.split(EXPLANATION_LEAD, 1)[1].splitlines()[0].strip()
            history = text.split(HISTORY_LEAD, 1)[1].splitlines()[0]
            word = explanation.removeprefix("Histories with ").rstrip(".")
            return "yes" if word and word.lower() in history.lower() else "no"
        return "Histories."


def _completion(text: str, logprobs: bool) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
    if logprobs:
        p_yes = 0.9 if text == "yes" else 0.1
        choice["logprobs"] = {"content": [{"token": text, "logprob": 0.0, "top_logprobs": [
            {"token": "yes", "logprob": math.log(p_yes)}, {"token": " no", "logprob": math.log(1 - p_yes)}]}]}
    return {"id": "fake", "object": "chat.completion", "choices": [choice]}


@contextmanager
def fake_llm(**options: Any) -> Iterator[FakeLlm]:
    """Serve a ``FakeLlm`` on 127.0.0.1 (a free port) for the block; its ``url`` is the API root."""
    state = FakeLlm(**options)
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                state.requests.append({"path": self.path, "payload": payload,
                                       "authorization": self.headers.get("Authorization")})
                failing = len(state.requests) <= state.fail_first
            if failing:
                self.send_error(503, "busy")
                return
            if state.body is not None:
                out = state.body
            elif self.path != "/v1/chat/completions":
                self.send_error(404, "no such endpoint")
                return
            else:
                out = json.dumps(_completion(state.answer(payload), bool(payload.get("logprobs")))).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
