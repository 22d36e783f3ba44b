"""Offline intent construction (docs/method.md, stage 1): ``build_intents(config)`` or
``python -m recbole_saerec.intents build --dataset=...``.

Modules: corpus (training-split texts), encode (any sentence-transformers / HF
encoder, cached and resumable), sae + sae_trainer (TopK SAE with AuxK), kmeans
(the KMeans-Intent baseline), interpret (words per latent), judge (which
latents are intents), build (the pipeline and the artefacts).
"""
