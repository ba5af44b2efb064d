"""PAD training: stage 1 (the PersRM's adapter and heads) and stage 2 (a user's ``w_p``)."""

from langchain_pad.training.pairs import PreferencePair, TokenizedPair, tokenize_pair
from langchain_pad.training.stage1 import Stage1Config, Stage1Result, pad_loss, train_stage1
from langchain_pad.training.stage2 import (
    PreferenceFit,
    fit_preference_weights,
    fit_weights_from_features,
    pair_feature_differences,
    uncertainty_order,
)

__all__ = [
    "PreferenceFit",
    "PreferencePair",
    "Stage1Config",
    "Stage1Result",
    "TokenizedPair",
    "fit_preference_weights",
    "fit_weights_from_features",
    "pad_loss",
    "pair_feature_differences",
    "tokenize_pair",
    "train_stage1",
    "uncertainty_order",
]
