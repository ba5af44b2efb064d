"""Stage 2 on simulated users: how well, and how fast, 8 pairs recover a hidden ``w_p``.

A simulated user has a hidden preference ``w_true`` and labels each pair of responses
by which one has the higher ``w_true . F`` (``F`` = summed PersRM token features). We
fit ``w_p`` from 8 labelled pairs and report the cosine with ``w_true``, over many
users, for two ways of choosing the 8 pairs:

- random: any 8 pairs of the pool;
- informative: 2 random pairs, then each next pair is the one the current fit is least
  sure about (``uncertainty_order``), as a feedback UI would ask.

Features come from the real embedded base model and a PersRM whose heads are
perturbed deterministically (the trained default is not shipped yet), on real answers
written for three prompts. Timings: the features of 8 text pairs plus the fit, from
text, in this process (the models already loaded), which is what a user waits for.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import statistics
from datetime import UTC, datetime
from pathlib import Path

import torch

from langchain_pad.models import load_model
from langchain_pad.reward_model import PersonalizedRewardModel
from langchain_pad.training import (
    PreferencePair,
    fit_preference_weights,
    fit_weights_from_features,
    pair_feature_differences,
    uncertainty_order,
)

RESPONSES = {
    "What is gravity?": [
        "Gravity is the force that pulls things toward each other, like an apple to the ground.",
        "Gravitation is spacetime curvature described by general relativity's field equations.",
        "It pulls stuff down.",
        "Gravity! The universe's best hug, keeping our feet happily on the ground.",
        "Every mass attracts every other mass with a force proportional to their masses.",
    ],
    "How do vaccines work?": [
        "Vaccines teach your body to recognize a germ so it can fight it quickly later.",
        "Vaccines present antigens that prime adaptive immunity, inducing memory B and T cells.",
        "They train immunity.",
        "A vaccine is a friendly wanted poster for germs, so your body knows whom to catch!",
        "A weakened or partial pathogen triggers antibodies without causing the disease.",
    ],
    "Why is the sea salty?": [
        "Rivers carry tiny bits of salt from rocks into the sea, and the salt stays there.",
        "Dissolved ions from weathered crustal rock and hydrothermal vents accumulate in seawater.",
        "Minerals from rocks.",
        "Because the rocks have been seasoning it for millions of years, like a very slow chef!",
        "Evaporation removes water but leaves salts behind, so they concentrate over time.",
    ],
}


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()

    loaded = load_model()
    rm = PersonalizedRewardModel(loaded.model, ["expertise", "informativeness", "style"])
    with torch.no_grad():
        rm.heads.add_(
            0.02 * torch.randn(rm.heads.shape, generator=torch.Generator().manual_seed(0))
        )
    text_pairs = [
        PreferencePair(prompt, a, b)
        for prompt, answers in RESPONSES.items()
        for a, b in itertools.combinations(answers, 2)
    ]
    from langchain_pad.training import tokenize_pair

    tokenized = [tokenize_pair(loaded.tokenizer, p) for p in text_pairs]
    pool = pair_feature_differences(rm, tokenized)

    generator = torch.Generator().manual_seed(0)
    random_cos, informative_cos = [], []
    for _ in range(args.users):
        w_true = torch.randn(3, generator=generator)
        oriented = pool * torch.sign(pool @ w_true).unsqueeze(1)
        order = torch.randperm(len(pool), generator=generator).tolist()
        w, _ = fit_weights_from_features(oriented[order[: args.pairs]], beta=1.0, l2=0.01)
        random_cos.append(cosine(w, w_true))
        asked = order[:2]
        while len(asked) < args.pairs:
            w, _ = fit_weights_from_features(oriented[asked], beta=1.0, l2=0.01)
            asked.append(next(i for i in uncertainty_order(oriented, w.tolist()) if i not in asked))
        w, _ = fit_weights_from_features(oriented[asked], beta=1.0, l2=0.01)
        informative_cos.append(cosine(w, w_true))

    timings = []
    for start in range(0, 3):
        batch = text_pairs[start * args.pairs : (start + 1) * args.pairs]
        fit = fit_preference_weights(rm, batch, tokenizer=loaded.tokenizer, l2=0.01)
        timings.append(fit.seconds)

    def summary(values: list[float]) -> dict[str, float]:
        return {
            "median_cosine": statistics.median(values),
            "share_cosine_ge_0.9": sum(v >= 0.9 for v in values) / len(values),
        }

    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.platform()}, {torch.get_num_threads()} torch threads",
        "users": args.users,
        "pairs_per_user": args.pairs,
        "pool_pairs": len(pool),
        "random_pairs": summary(random_cos),
        "informative_pairs": summary(informative_cos),
        "fit_from_text_seconds": timings,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "stage2_fit.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
