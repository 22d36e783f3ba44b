"""Offline intent construction, end to end (docs/method.md stage 1): ``build_intents(config)``.

corpus (training split only) -> text embeddings -> TopK SAE (or KMeans-Intent)
-> top words per latent -> judge -> keep rule -> artefacts (the contract of
``recbole_saerec.artefacts``) plus readable extras:

    catalogue.md / catalogue.csv   the kept intents (words, summary, verdict, frequency, example texts)
    all_latents.csv                every live latent with its verdict (kept or not)
    <dataset>.itemintent           the per-item activations as a RecBole atomic file
    intent_catalogue.png           activation-frequency histogram + verdict counts
    sae.json                       the SAE's (or KMeans') metrics

Expensive stages are cached under ``intent_cache_dir`` (default
``<intent_dir>/cache``): embeddings by (texts, encoder, layer, pooling ...),
the SAE by (embeddings, every SAE setting), verdicts by (words, judge). A
rebuild with the same settings therefore only re-reads the dataset and
re-writes the files. The old manifest is removed before anything is written
and the new one is written last, so an interrupted build never loads as
complete. Builds of one ``intent_dir`` take turns (a file lock), so two runs
started together never interleave their files. The manifest records the sha256
of the raw files the texts came from and the build settings; ``check_intent_sources`` and
``check_build_settings`` compare them before a model uses the intents (texts or settings
changed after the build: rebuild or stop).

The package, read in this order: ``stages`` (SAE / KMeans codes, per-item activations),
``grounding_stage`` (the grounding stage and its plot), ``outputs`` (catalogue tables, .itemintent,
plot), ``sources`` (raw-source hashes and build settings, the checks before use), ``pipeline``
(``build_intents``: the stages in order, each passing its results to the next).
"""
from recbole_saerec.intents.build.grounding_stage import (GROUNDING_KEYS, ground_latents, grounding_summary,
                                                          write_grounding_plot)
from recbole_saerec.intents.build.outputs import VERDICT_ORDER, write_catalogue_tables, write_itemintent, write_plot
from recbole_saerec.intents.build.pipeline import build_intents
from recbole_saerec.intents.build.sources import check_build_settings, check_intent_sources, source_hashes
from recbole_saerec.intents.build.stages import (IntentBuildError, codes_matrix, fit_codes, item_activations,
                                                 sae_seed, top_examples)

__all__ = ["GROUNDING_KEYS", "IntentBuildError", "VERDICT_ORDER", "build_intents", "check_build_settings",
           "check_intent_sources", "codes_matrix", "fit_codes",
           "ground_latents", "grounding_summary", "item_activations", "sae_seed", "source_hashes", "top_examples",
           "write_catalogue_tables", "write_grounding_plot", "write_itemintent", "write_plot"]
