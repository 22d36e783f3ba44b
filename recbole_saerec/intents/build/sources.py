"""The raw sources a build was made from: their hashes, and the check before a model uses the intents."""
import json
import os
from logging import getLogger

from recbole_saerec.artefacts import MANIFEST, IntentArtefactError, build_hint, file_sha256, write_json_atomic
from recbole_saerec.intents.corpus import build_corpus, corpus_sources
from recbole_saerec.utils import setting

def source_hashes(config, source):
    """{file name: sha256} of the raw files a corpus of ``source`` reads (names relative to data_path)."""
    return {os.path.basename(p): file_sha256(p) for p in corpus_sources(config, source) if os.path.isfile(p)}


def check_intent_sources(config, intent_dir):
    """Stop (or rebuild) when the texts an existing build was made from have changed since.

    Fast path: the raw files' sha256 equal the manifest's ``sources``. When one differs, the
    corpus is rebuilt and its hash compared with the fingerprint's ``corpus_sha1`` (a price edit
    in the .item file does not change the texts: the new file hashes are then recorded). Changed
    texts rebuild the intents when ``intent_autobuild`` is on, else raise IntentArtefactError.
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
    if setting(config, "intent_autobuild"):
        getLogger().warning(f"{what}; rebuilding the intents.")
        # through the package: the name tests (and users) patch, and no import cycle with pipeline
        from recbole_saerec.intents import build as package

        package.build_intents(config, intent_dir=intent_dir)
        return
    raise IntentArtefactError(f"{what}, so the intents describe other texts. "
                              f"{build_hint(config['dataset'], intent_dir)}")
