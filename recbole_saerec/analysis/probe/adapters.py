"""Adapters: read (and optionally replace) the representation a recommender scores items with.

One adapter per model family wraps one method of the model instance (sequential ``forward``,
BPR-like ``get_user_embedding``, LightGCN-like ``forward()`` tables); see the package docstring.
"""
import contextlib
import inspect

import torch
from torch import nn


class UnsupportedModelError(ValueError):
    """The probe has no adapter for this model's representation."""


# ----------------------------------------------------------------------------- adapters
class Adapter:
    """Reads (and optionally replaces) the representation a model scores with.

    ``method`` names the model method whose output holds the representation;
    ``intercept`` shadows it on the instance (``self.forward(...)`` inside
    ``full_sort_predict`` then goes through the wrapper; module hooks would not
    fire there, since RecBole calls ``self.forward`` directly).
    """

    family = ""
    method = ""

    def __init__(self, model, config=None):
        self.model = model
        self.config = config  # the run's config: the evaluation's ranking rules (mask_history)

    # the representation inside the method's output, and putting a new one back
    def split(self, out):
        return out[0] if isinstance(out, tuple) else out

    def join(self, out, rep):
        return (rep,) + tuple(out[1:]) if isinstance(out, tuple) else rep

    def case_rows(self, rep, interaction):
        """Rows of the captured representation that belong to the interaction's cases."""
        return rep

    def reset_cache(self):
        pass

    def check(self, rep, interaction):
        pass

    @contextlib.contextmanager
    def intercept(self, transform=None):
        """Within the block, ``full_sort_predict`` scores with ``transform(representation)``.

        Yields a list that receives every representation the method produced
        (before the transform).
        """
        model, captured = self.model, []
        original = getattr(model, self.method)

        def wrapped(*args, **kwargs):
            out = original(*args, **kwargs)
            rep = self.split(out)
            captured.append(rep.detach())
            if transform is not None:
                out = self.join(out, transform(rep))
            return out

        model.__dict__[self.method] = wrapped  # shadows the class method on this instance only
        self.reset_cache()
        try:
            yield captured
        finally:
            del model.__dict__[self.method]
            self.reset_cache()

    @torch.no_grad()
    def run(self, interaction, transform=None):
        """(scores [B, n_items], representation [B, d]) of the model's own full_sort_predict."""
        with self.intercept(transform) as captured:
            scores = self.model.full_sort_predict(interaction)
        if not captured:
            raise UnsupportedModelError(
                f"{type(self.model).__name__}.full_sort_predict never called {self.method}(); the probe reads "
                f"the representation there. Add an adapter for this model in recbole_saerec/analysis/probe/adapters.py.")
        rep = self.case_rows(captured[-1], interaction)
        self.check(rep, interaction)
        return scores.view(rep.shape[0], -1), rep

    def item_matrix(self, interaction):
        """[n_items, d]: the item vectors the representation is scored against."""
        weight = getattr(self.model, "item_embedding", None)
        if not isinstance(weight, nn.Embedding):
            raise UnsupportedModelError(f"{type(self.model).__name__} has no item_embedding table.")
        return weight.weight.detach()


class SequentialAdapter(Adapter):
    """``forward(item_seq, item_seq_len)`` -> [B, d], scored against ``item_embedding`` or, for the plugin's
    models, the table their ``user_and_table`` scores against (SAERec's intent feature, GuidedRec's blocks ...)."""

    family, method = "sequential", "forward"

    def check(self, rep, interaction):
        if rep.dim() != 2 or rep.shape[0] != len(interaction):
            raise UnsupportedModelError(
                f"{type(self.model).__name__}.forward returns shape {tuple(rep.shape)}, not [batch, d]: the "
                f"probe needs the last position's state (models like BERT4Rec gather it inside "
                f"full_sort_predict; add an adapter in recbole_saerec/analysis/probe/adapters.py).")

    def item_matrix(self, interaction):
        if not hasattr(self.model, "user_and_table"):
            return super().item_matrix(interaction)
        with torch.no_grad():
            return self.model.user_and_table(interaction[self.model.ITEM_SEQ],
                                             interaction[self.model.ITEM_SEQ_LEN])[1].detach()


class UserEmbeddingAdapter(Adapter):
    """BPR-like: ``get_user_embedding(user)`` -> [B, d], scored against ``item_embedding``."""

    family, method = "general (user embedding)", "get_user_embedding"


class PropagatedAdapter(Adapter):
    """LightGCN-like: ``forward()`` -> (user table, item table, ...), cached in ``restore_user_e``."""

    family, method = "general (propagated)", "forward"

    def reset_cache(self):
        self.model.restore_user_e = None
        self.model.restore_item_e = None

    def case_rows(self, rep, interaction):
        return rep[interaction[self.model.USER_ID]]

    def item_matrix(self, interaction):
        with torch.no_grad():
            out = self.model.forward()
        self.reset_cache()
        return out[1].detach()


def make_adapter(model, config=None):
    """The adapter for a model's family, or UnsupportedModelError saying what is missing."""
    from recbole.utils import ModelType

    name = type(model).__name__
    if model.type == ModelType.SEQUENTIAL:
        return SequentialAdapter(model, config)
    if model.type == ModelType.GENERAL:
        if hasattr(model, "restore_user_e"):
            return PropagatedAdapter(model, config)
        if callable(getattr(model, "get_user_embedding", None)):
            return UserEmbeddingAdapter(model, config)
    raise UnsupportedModelError(
        f"The probe supports sequential models whose forward() returns the [batch, d] state they score with "
        f"(SASRec, GRU4Rec, SAERec, ...), BPR-like models (get_user_embedding) and LightGCN-like models "
        f"(forward() -> user/item tables, restore_user_e); {name} ({model.type}) is none of these.")

