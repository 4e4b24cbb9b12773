"""The optional judge: the real openai client against a small OpenAI-compatible server on 127.0.0.1."""

import json
import logging

import pytest

from alignment.judge import Judge, JudgeConfig, combine_verdicts, parse_verdict
from fake_openai import FakeChatServer, serve

KEY = "sk-test-SECRET-0123456789"


class FakeOpenAI(FakeChatServer):
    """Answers /v1/chat/completions. ``script`` is a list of behaviours consumed one request at a time:
    "judge" (prefers the response containing GOOD), "429", "malformed", "401", or a literal reply text."""

    script: list = []
    requests: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"auth": self.headers.get("Authorization"), "body": body})
        action = type(self).script.pop(0) if type(self).script else "judge"
        if action == "429":
            return self.send(429, {"error": {"message": "rate limited"}}, {"retry-after-ms": "10"})
        if action == "401":
            return self.send(401, {"error": {"message": f"Incorrect API key provided: {KEY}"}})
        if action == "malformed":
            raw = b'{"id": "x", "choices": [ {"message": '
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            return self.wfile.write(raw)
        if action == "judge":
            text = body["messages"][0]["content"]
            a = text.split("[Response A]")[1].split("[Response B]")[0]
            action = "A" if "GOOD" in a else "B"
        self.reply(body, action)


@pytest.fixture()
def server():
    FakeOpenAI.script, FakeOpenAI.requests = [], []
    with serve(FakeOpenAI) as url:
        yield url


def _judge(url, retries=2):
    return Judge(JudgeConfig(model="fake-judge", base_url=url, api_key=KEY, timeout_s=5, max_retries=retries))


def _no_key(*things):
    for t in things:
        assert KEY not in (t if isinstance(t, str) else json.dumps(t, default=str))


def test_verdict_parsing_and_position_bias():
    assert [parse_verdict(t) for t in ("A", " b", "B.", "Tie", "A or B", "", "The answer is A")] == \
        ["A", None, "B", "tie", None, None, "A"]
    assert combine_verdicts("A", "B") == "A"    # a wins in both orders
    assert combine_verdicts("A", "A") == "tie"  # always the first position: bias, not preference
    assert combine_verdicts("tie", "A") == "tie" and combine_verdicts(None, "A") is None


def test_normal_verdict_in_both_orders(server, caplog):
    caplog.set_level(logging.DEBUG)
    j = _judge(server)
    out = j.judge("Say hi", "GOOD hello", "bad")
    assert out == {"verdict": "A", "orders": [{"order": "a,b", "verdict": "A"}, {"order": "b,a", "verdict": "B"}],
                   "error": None}
    assert len(FakeOpenAI.requests) == 2 and FakeOpenAI.requests[0]["auth"] == f"Bearer {KEY}"
    assert FakeOpenAI.requests[0]["body"]["model"] == "fake-judge"
    assert j.judge("Say hi", "bad", "GOOD hello")["verdict"] == "B"
    _no_key(out, repr(j.config), j.config.describe(), caplog.text)


def test_429_then_success(server, caplog):
    caplog.set_level(logging.DEBUG)
    FakeOpenAI.script = ["429", "judge", "judge"]
    out = _judge(server).judge("Say hi", "GOOD", "bad")
    assert out["verdict"] == "A" and out["error"] is None
    assert len(FakeOpenAI.requests) == 3  # one retried request
    _no_key(out, caplog.text)


def test_malformed_and_unparseable_replies(server, caplog):
    caplog.set_level(logging.DEBUG)
    FakeOpenAI.script = ["malformed"]
    out = _judge(server, retries=0).judge("Say hi", "GOOD", "bad")
    assert out["verdict"] is None and out["error"]
    FakeOpenAI.script = ["I cannot decide", "A"]
    out2 = _judge(server).judge("Say hi", "GOOD", "bad")
    assert out2["verdict"] is None and "unparseable" in out2["error"]
    _no_key(out, out2, caplog.text)


def test_key_is_redacted_from_server_errors(server, caplog):
    caplog.set_level(logging.DEBUG)
    FakeOpenAI.script = ["401"]
    out = _judge(server, retries=0).judge("Say hi", "GOOD", "bad")
    assert out["verdict"] is None and "***" in out["error"]
    _no_key(out, caplog.text)


def test_manager_judge_from_env(server, monkeypatch, tmp_path):
    from class7_1 import AlignmentComparisonManager

    manager = AlignmentComparisonManager("tiny", output_dir=tmp_path)
    for var in ("JUDGE_API_KEY", "OPENAI_API_KEY", "JUDGE_BASE_URL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env here
    judge, info = manager.judge()
    assert judge is None and "JUDGE_API_KEY" in info
    (tmp_path / ".env").write_text(f"JUDGE_API_KEY={KEY}\nJUDGE_BASE_URL={server}\nJUDGE_MODEL=fake-judge\n")
    judge, info = manager.judge()
    assert judge.judge("q", "GOOD", "x")["verdict"] == "A"
    assert "fake-judge" in info
    _no_key(info)
