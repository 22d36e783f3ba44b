"""Reading trained models: explanations, intent steering, the RecSAE probe, GuidedRec attribution."""
