"""RecSAE probe: interpret and steer any trained RecBole model with a TopK sparse autoencoder.

    python -m recbole_saerec.analysis.probe --checkpoint=saved/SASRec-....pth [--latents_mult 16] [--k 8] [--out dir]

After RecSAE (Wang et al., "RecSAE: interpreting sequential recommendation
models with sparse autoencoders"; docs/method.md, "RecSAE"). The recommender is
frozen; everything below reads the representation it scores items with.

1. **Representation.** The vector right before the prediction layer, taken
   from the model's own ``full_sort_predict`` through a per-family adapter
   that wraps one method of the model instance:
   sequential models -> ``forward(item_seq, item_seq_len)`` (the last
   position's state, scored as ``seq_output @ item_embedding.T``); BPR-like
   models -> ``get_user_embedding(user)``; LightGCN-like models -> the user
   table of ``forward()`` (the propagated embeddings). Cases = every training
   prefix (sequential models: RecBole's augmented training interactions) or
   every training user (general models).
2. **SAE.** The shared TopK SAE (``intents/sae.py``) trained by the shared
   trainer (``intents/sae_trainer.py``) on all training cases: latents =
   ``latents_mult`` x d (16 x d), k = 8.
3. **Concepts.** Users are split (seeded, 80/20) into a *fit* part and a
   *held-out* part. For each latent, its top ``n_top`` fit cases (highest
   activation, at most one case per user) and **the model's top-10
   recommended items for them** (computed with the untouched representation;
   general models mask the user's training items as RecBole's evaluation
   does). Recommended items rather than the items in the sequences: the
   representation is what scores items, the tuning metric counts concept
   items in top-10 lists, and the definition is the same for sequential and
   general models. TF-IDF (sklearn) over one document per latent (the text
   of all those items) gives the term concept: the ``n_terms`` strongest
   terms. Optional LM sentence concept: ``--lm_concept`` (judge backends).
4. **Verification.** An item *matches* a concept when its text contains at
   least one concept term; a case's presence = share of its top-10 items
   that match. Predict "activating" iff presence > the concept's base rate
   (mean presence over the fit cases). Positives = the latent's top held-out
   activating cases (one per user, at most ``n_verify``), negatives = as many
   random held-out cases where the latent is off. Confidence = accuracy;
   verified = confidence >= 0.8 (needs >= ``min_verify`` positives).
5. **Metrics.** Intra-/inter-latent cosine similarity of each unit's top
   items (the 10 items most frequent in its top cases' top-10 lists;
   cosine of the probed model's item embeddings), for the SAE latents and
   for the raw dimensions as units (the base). HR/NDCG@10,20 on the test split
   with the representation replaced by the SAE reconstruction, by a dense
   autoencoder (ReLU, same latent count, same data and steps), and untouched.
6. **Targeted tuning.** Scale one latent's activation by s in the
   reconstruction (only where the latent is active: s = 1 changes nothing,
   s = 0 removes it) for the test cases where it is active; presence of its
   concept in the top-10 vs. the mean presence of the other tuned concepts.

Outputs in ``--out``: concepts.{csv,md,json}, metrics.json (options, model,
versions, seed, machine, command), tuning.csv, confidence_hist.png,
tuning_curves.png.

The package, read in this order: ``adapters`` (the representation per model family), ``cases``
(checkpoint loading, training cases, test batches, HR/NDCG), ``autoencoders`` (the SAE transform
and the dense AE), ``concepts`` (units, term concepts, similarity, verification), ``run`` (the
steps 1-6 above), ``report`` (the output files), ``cli``.
"""
from recbole_saerec.analysis.probe.adapters import (Adapter, PropagatedAdapter, SequentialAdapter,
                                                    UnsupportedModelError, UserEmbeddingAdapter, make_adapter)
from recbole_saerec.analysis.probe.autoencoders import DenseAE, fit_autoencoders, fvu, sae_transform, train_dense_ae
from recbole_saerec.analysis.probe.cases import (collect_cases, evaluate, item_text_array, load_probed,
                                                 masked_scores, test_batches)
from recbole_saerec.analysis.probe.cli import main
from recbole_saerec.analysis.probe.concepts import (concept_masks, item_term_matrix, latent_segments, lm_concepts,
                                                    presence, similarity, sparse_codes, term_concepts, top_items,
                                                    top_unique_users, verify_concept)
from recbole_saerec.analysis.probe.report import write_outputs
from recbole_saerec.analysis.probe.run import DEFAULT_SCALES, probe

__all__ = ["Adapter", "DEFAULT_SCALES", "DenseAE", "PropagatedAdapter", "SequentialAdapter", "UnsupportedModelError",
           "UserEmbeddingAdapter", "collect_cases", "concept_masks", "evaluate", "fit_autoencoders", "fvu",
           "item_term_matrix", "item_text_array", "latent_segments", "lm_concepts", "load_probed", "main",
           "make_adapter", "masked_scores", "presence", "probe", "sae_transform", "similarity", "sparse_codes",
           "term_concepts", "test_batches", "top_items", "top_unique_users", "train_dense_ae", "verify_concept",
           "write_outputs"]
