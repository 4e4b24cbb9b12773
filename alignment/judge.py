"""An optional LLM judge through any OpenAI-compatible chat-completions server (the ``openai`` client).

Configuration comes from the environment or a ``.env`` file (python-dotenv)::

    JUDGE_API_KEY=sk-...            # or OPENAI_API_KEY
    JUDGE_BASE_URL=https://api.openai.com/v1   # or OPENAI_BASE_URL; any OpenAI-compatible server (vLLM, llama.cpp, Ollama)
    JUDGE_MODEL=gpt-4o-mini

Each pair is judged twice, in both orders (A/B then B/A), and the verdicts are combined so that a judge that
always prefers the first position gives a tie instead of a win (position bias; Zheng et al. 2023, "Judging
LLM-as-a-Judge", Sec. 3.3). Requests have a timeout and retries with backoff (the client retries 429 and 5xx).
The key is kept out of ``repr``, results and error messages.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

JUDGE_PROMPT = """You are comparing two assistant responses to the same user prompt.
Prefer the response that is more helpful, honest and harmless, and that answers what was asked.

[Prompt]
{prompt}

[Response A]
{a}

[Response B]
{b}

Answer with exactly one word: A, B or tie."""

ENABLE_HELP = ("The judge is off: no API key. Put JUDGE_API_KEY (or OPENAI_API_KEY), optionally JUDGE_BASE_URL "
               "(any OpenAI-compatible server) and JUDGE_MODEL in a .env file next to app.py, then restart the app.")


def parse_verdict(text: str | None) -> str | None:
    """``"A"``, ``"B"`` or ``"tie"`` from a judge reply, or None if the reply says none of them unambiguously."""
    if not text:
        return None
    words = re.findall(r"\b(A|B|tie|TIE|Tie)\b", text.strip())
    found = {w if w in ("A", "B") else "tie" for w in words}
    return found.pop() if len(found) == 1 else None


def combine_verdicts(first: str | None, swapped: str | None) -> str | None:
    """Verdict on (a, b) from the verdict on (a, b) and on the swapped order (b, a).

    Both orders agree -> that winner; they disagree (position bias) or either says tie -> ``"tie"``;
    an unparseable reply -> None.
    """
    if first is None or swapped is None:
        return None
    unswapped = {"A": "B", "B": "A", "tie": "tie"}[swapped]
    return first if first == unswapped and first != "tie" else "tie"


@dataclass
class JudgeConfig:
    """Where the judge lives. ``api_key`` is never shown (``repr=False``)."""

    model: str = "gpt-4o-mini"
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 30.0
    max_retries: int = 3

    @classmethod
    def from_env(cls, dotenv_path: str | None = None) -> "JudgeConfig":
        """Read ``JUDGE_*`` (or ``OPENAI_*``) variables from the environment, then from ``.env`` (the file given,
        else ``.env`` in the working directory or the project root). The environment wins; nothing is exported."""
        from pathlib import Path

        from dotenv import dotenv_values

        candidates = [Path(dotenv_path)] if dotenv_path else [Path.cwd() / ".env", Path(__file__).resolve().parents[1] / ".env"]
        found = next((p for p in candidates if p.is_file()), None)
        values = {**(dotenv_values(found) if found else {}), **os.environ}
        env = values.get
        return cls(model=env("JUDGE_MODEL", "gpt-4o-mini"),
                   base_url=env("JUDGE_BASE_URL") or env("OPENAI_BASE_URL") or None,
                   api_key=env("JUDGE_API_KEY") or env("OPENAI_API_KEY") or None,
                   timeout_s=float(env("JUDGE_TIMEOUT_S", "30")), max_retries=int(env("JUDGE_MAX_RETRIES", "3")))

    @property
    def enabled(self) -> bool:
        return bool(self.api_key)

    def describe(self) -> str:
        """A line safe to show: model and server, never the key."""
        if not self.enabled:
            return ENABLE_HELP
        return f"Judge: {self.model} at {self.base_url or 'api.openai.com'} (key set)"


class Judge:
    """Pairwise judge. ``judge(prompt, a, b)`` -> ``{"verdict", "orders": [...], "error"}``.

    ``verdict`` is ``"A"`` (a better), ``"B"`` (b better), ``"tie"``, or None when a reply could not be parsed
    or the server failed after retries (``error`` says why; the key is redacted from it).
    """

    def __init__(self, config: JudgeConfig):
        if not config.enabled:
            raise ValueError(ENABLE_HELP)
        from openai import OpenAI

        self.config = config
        self.client = OpenAI(api_key=config.api_key, base_url=config.base_url, timeout=config.timeout_s,
                             max_retries=config.max_retries)

    def _redact(self, text: str) -> str:
        return text.replace(self.config.api_key, "***") if self.config.api_key else text

    def _ask(self, prompt: str, a: str, b: str) -> tuple[str | None, str]:
        reply = self.client.chat.completions.create(
            model=self.config.model, temperature=0.0, max_tokens=5,
            messages=[{"role": "user", "content": JUDGE_PROMPT.format(prompt=prompt, a=a, b=b)}])
        content = reply.choices[0].message.content if reply.choices else None
        return parse_verdict(content), (content or "")[:200]

    def judge(self, prompt: str, a: str, b: str) -> dict:
        try:
            first, raw1 = self._ask(prompt, a, b)
            swapped, raw2 = self._ask(prompt, b, a)
        except Exception as exc:  # openai errors, timeouts, malformed JSON: reported, never raised into the UI
            return {"verdict": None, "orders": [], "error": self._redact(f"{type(exc).__name__}: {exc}")[:300]}
        verdict = combine_verdicts(first, swapped)
        error = None if verdict else f"unparseable judge reply: {self._redact(raw1 if first is None else raw2)!r}"
        return {"verdict": verdict, "orders": [{"order": "a,b", "verdict": first}, {"order": "b,a", "verdict": swapped}],
                "error": error}
