"""The raw sources a build was made from: their hashes, and the check before a model uses the intents."""
import json
import os
from logging import getLogger

from recbole_saerec.artefacts import MANIFEST, IntentArtefactError, build_hint
from recbole_saerec.fileio import file_sha256, write_json_atomic
from recbole_saerec.intents.corpus import build_corpus, corpus_sources
from recbole_saerec.intents.judge import parse_keep_rule
from recbole_saerec.settings import setting

def source_hashes(config, source):
    """{file name: sha256} of the raw files a corpus of ``source`` reads (names relative to data_path)."""
    return {os.path.basename(p): file_sha256(p) for p in corpus_sources(config, source) if os.path.isfile(p)}


def check_intent_sources(config, intent_dir, rebuild):
    """Stop (or rebuild) when the texts an existing build was made from have changed since.

    Fast path: the raw files' sha256 equal the manifest's ``sources``. When one differs, the
    corpus is rebuilt and its hash compared with the fingerprint's ``corpus_sha1`` (a price edit
    in the .item file does not change the texts: the new file hashes are then recorded). Changed
    texts rebuild the intents when ``intent_autobuild`` is on (``rebuild(config, intent_dir=...)``,
    ``build_intents`` or a stand-in), else raise IntentArtefactError.
    """
    from recbole.data import create_dataset

    manifest_path = os.path.join(intent_dir, MANIFEST)
    if not os.path.isfile(manifest_path):
        return
    with open(manifest_path, encoding="utf-8") as f:
        manifest = json.load(f)
    recorded = manifest.get("sources") or {}
    data_path = config["data_path"]
    changed = [name for name, digest in recorded.items()
               if os.path.isfile(os.path.join(data_path, name)) and file_sha256(os.path.join(data_path, name)) != digest]
    if not changed:
        return
    corpus = build_corpus(config, create_dataset(config))
    if corpus.sha1 == manifest.get("fingerprint", {}).get("corpus_sha1"):
        manifest["sources"] = dict(recorded, **source_hashes(config, corpus.source))
        write_json_atomic(manifest_path, manifest)
        return
    what = (f"{', '.join(changed)} changed after the intent build in {intent_dir}: the texts differ "
            f"(corpus {corpus.sha1} != {manifest['fingerprint'].get('corpus_sha1')} recorded)")
    _rebuild_or_refuse(config, intent_dir, what, "so the intents describe other texts", rebuild)


def check_build_settings(config, intent_dir, rebuild):
    """Stop (or rebuild) when an existing build was made with other settings than the config asks for.

    The build settings a manifest's fingerprint records (the keep rule, the method, the SAE's k and
    M when set, the grounding settings of a grounded rule) are compared with the config's. For a
    build found through ``intent_root``/``intent_tag`` every setting counts: a changed default (or a
    changed ``intent_keep``) must not silently reuse the old build. For an explicit ``intent_dir``
    only the settings the user set count: that directory is the user's choice of build. Rebuilds
    (``rebuild``) or refuses as :func:`check_intent_sources`.
    """
    manifest_path = os.path.join(intent_dir, MANIFEST)
    if not os.path.isfile(manifest_path):
        return
    with open(manifest_path, encoding="utf-8") as f:
        recorded = json.load(f).get("fingerprint") or {}
    explicit = getattr(config, "external_config_dict", None)
    counts = ((lambda key: True) if not setting(config, "intent_dir") or explicit is None
              else (lambda key: key in explicit))
    differ = [f"{key}={wanted!r} (built with {built!r})" for key, wanted, built in _build_settings(config, recorded)
              if counts(key) and not _same(key, wanted, built)]
    if differ:
        _rebuild_or_refuse(config, intent_dir, f"the intent build in {intent_dir} was made with other settings: "
                           + ", ".join(differ), "so it is not the intent set this config asks for", rebuild)


def _build_settings(config, recorded):
    """(config key, the config's value, the fingerprint's value) for each setting a build records."""
    rows = [("intent_keep", setting(config, "intent_keep"), recorded.get("keep")),
            ("intent_method", setting(config, "intent_method"), recorded.get("method"))]
    sizes = {"sae": (("sae_k", "k"), ("sae_n_latents", "n_latents")), "kmeans": (("kmeans_n_clusters", "n_latents"),)}
    # ~ (None) = the builder's own rule: only values the config fixes are compared
    rows += [(key, setting(config, key), recorded.get(field)) for key, field in sizes.get(recorded.get("method"), ())
             if setting(config, key) is not None]
    if "grounding" in recorded and parse_keep_rule(setting(config, "intent_keep"))[1]:
        rows += [(key, setting(config, key), recorded["grounding"].get(key)) for key in sorted(recorded["grounding"])]
    return [row for row in rows if row[2] is not None]


def _same(key, wanted, built):
    if key == "intent_keep":  # 'grounded+yes' and 'yes+grounded' (or True) are one rule
        try:
            return parse_keep_rule(wanted) == parse_keep_rule(built)
        except ValueError:
            return False
    if isinstance(wanted, (int, float)) and isinstance(built, (int, float)):
        return float(wanted) == float(built)
    return wanted == built


def _rebuild_or_refuse(config, intent_dir, what, consequence, rebuild):
    """Rebuild in place when ``intent_autobuild`` is on (a warning says why), else a clear error."""
    if setting(config, "intent_autobuild"):
        getLogger().warning(f"{what}; rebuilding the intents.")
        rebuild(config, intent_dir=intent_dir)
        return
    raise IntentArtefactError(f"{what}, {consequence}. {build_hint(config['dataset'], intent_dir)}")
