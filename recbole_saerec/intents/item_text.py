"""Dense item-text vectors: the input of the text controls (SASRecTextFeat, LLMInit).

The text controls ask whether SAERec's gain needs the SAE's intents or any text embedding of
the items would do. So they read the SAME text as SAERec's intent build: the same corpus
(training-split reviews, or item text; :mod:`recbole_saerec.intents.corpus`), the same encoder
and settings (``intent_encoder*``), and the same embedding cache (the dataset's shared intent
cache, so nothing is encoded twice). An item's vector is the mean of its corpus entries'
embeddings, L2-normalised again; an item without text gets zeros (``has_text`` False).

Artefact (contract: :func:`recbole_saerec.artefacts.load_item_text`):
``<intent_root>/<dataset>/item_text/item_text-<fingerprint>.pt`` with ``item_tokens``,
``vectors`` float32 [n, d_t], ``has_text`` bool [n], ``fingerprint``, ``encoder``, ``dataset``.
The fingerprint hashes the item set, the corpus and the encoder settings; a build with the same
fingerprint is reused. Built before the model's seed is set (``quick_start.ensure_item_text``).
"""
import hashlib
import json
import os
from logging import getLogger

import numpy as np
import torch

from recbole_saerec.artefacts import ITEM_TEXT_FORMAT_VERSION, item_text_file, items_sha1
from recbole_saerec.fileio import save_tensor_file_atomic
from recbole_saerec.settings import setting


def build_item_text(config, item_tokens):
    """The item-text artefact for ``config``'s dataset (built or found); returns its dict with ``path``."""
    from recbole.data import create_dataset

    from recbole_saerec.artefacts import shared_cache_dir
    from recbole_saerec.intents.corpus import build_corpus
    from recbole_saerec.intents.encode import encode_cached, make_encoder

    item_tokens = [str(t) for t in item_tokens]
    corpus = build_corpus(config, create_dataset(config))
    encoder = make_encoder(config)
    chunk = int(setting(config, "intent_encode_chunk"))
    spec = dict(encoder.key(), chunk=chunk)
    fingerprint = hashlib.sha1(json.dumps({"v": ITEM_TEXT_FORMAT_VERSION, "dataset": str(config["dataset"]),
                                           "items": items_sha1(item_tokens), "corpus": corpus.sha1,
                                           "encoder": spec}, sort_keys=True).encode()).hexdigest()[:16]
    path = item_text_file(setting(config, "intent_root"), config["dataset"], fingerprint)
    if os.path.isfile(path):
        return {**torch.load(path, weights_only=True), "path": path}
    cache_dir = setting(config, "intent_cache_dir") or shared_cache_dir(setting(config, "intent_root"),
                                                                         config["dataset"])
    getLogger().info(f"item text: {len(corpus.texts)} texts of {corpus.stats.get('items_covered')} items "
                     f"(corpus '{corpus.source}', encoder {encoder.name}; cache {cache_dir})")
    emb = encode_cached(encoder, corpus.texts, cache_dir, chunk_size=chunk, progress=bool(config["show_progress"]),
                        desc="encode texts")
    row_of = {t: r for r, t in enumerate(item_tokens)}
    sums = np.zeros((len(item_tokens), emb.shape[1]), dtype=np.float64)
    counts = np.zeros(len(item_tokens), dtype=np.int64)
    for text_row, item in zip(corpus.entry_text.tolist(), corpus.entry_item):
        sums[row_of[item]] += emb[text_row]
        counts[row_of[item]] += 1
    vectors = torch.nn.functional.normalize(torch.as_tensor(sums, dtype=torch.float32), dim=-1)  # zeros stay zeros
    out = {"item_tokens": item_tokens, "vectors": vectors.contiguous(), "has_text": torch.as_tensor(counts > 0),
           "fingerprint": fingerprint, "encoder": spec, "dataset": str(config["dataset"]),
           "corpus": corpus.source, "format_version": ITEM_TEXT_FORMAT_VERSION}
    save_tensor_file_atomic(path, out)
    return {**out, "path": path}
