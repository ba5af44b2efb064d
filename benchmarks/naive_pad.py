"""The PAD paper's released decoding algorithm, written out as ``pad_speed.py``'s baseline.

A baseline, not library code: every step re-runs both models over the whole prefix with
no KV cache (see :func:`naive_pad_decode`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from langchain_pad.reward_model import PersonalizedRewardModel

Weights = tuple[float, ...]


def naive_pad_decode(
    model: Any,
    rm: PersonalizedRewardModel,
    prompt: Sequence[int],
    new_tokens: int,
    weights: Weights,
    candidates: int,
    on_token: Callable[[], None] | None = None,
) -> list[int]:
    """Greedy PAD as the paper's released code does it: no KV cache, two models.

    Every step: (1) the base model over the whole sequence gives ``log pi_LM`` and the
    top-K candidates; (2) the PersRM, a second forward over the whole sequence (the
    backbone again, for the trunk hidden states and the reference ``log pi_ref``, then
    the adapter layers and the heads), gives ``phi_i(s, a) = log pihat_theta_i(a | s) -
    log pi_ref(a | s)`` normalized over the vocabulary (eq. 5); (3) the candidate with
    the highest ``log pi_LM(a | s) + beta * w_p . phi(s, a)`` (eq. 7) is appended.
    """
    w = torch.tensor(weights, dtype=torch.float32)
    lm_head = rm.lm_head_weight
    ids = list(prompt)
    generated: list[int] = []
    with torch.inference_mode():
        for _ in range(new_tokens):
            x = torch.tensor([ids], dtype=torch.long)
            # (1) base model, whole sequence, no cache.
            logits = model(input_ids=x, use_cache=False, logits_to_keep=1).logits[0, -1]
            base_logprobs = torch.log_softmax(logits.float(), dim=-1)
            top_logprobs, top_ids = base_logprobs.topk(candidates)
            # (2) PersRM: its own full forward of the backbone, then adapter and heads.
            rm_out = model(
                input_ids=x, use_cache=False, logits_to_keep=1, output_hidden_states=True
            )
            adapted = rm.adapt(rm_out.hidden_states[rm.trunk_layer])[:, -1]  # [1, H]
            per_axis = rm.axis_hidden(adapted)[0]  # [d, H]
            theta = torch.log_softmax((per_axis @ lm_head.T).float(), dim=-1)  # [d, V]
            ref = torch.log_softmax(rm_out.logits[0, -1].float(), dim=-1)  # [V]
            phi = theta[:, top_ids].T - ref[top_ids].unsqueeze(-1)  # [K, d]
            # (3) reward-adjusted greedy pick among the candidates.
            score = top_logprobs + rm.beta * (phi @ w)
            token = int(top_ids[score.argmax()])
            ids.append(token)
            generated.append(token)
            if on_token is not None:
                on_token()
    return generated


def run_naive(
    model: Any,
    rm: PersonalizedRewardModel,
    prompts: Sequence[tuple[int, ...]],
    new_tokens: int,
    weights: Sequence[Weights],
    candidates: int,
) -> tuple[list[list[int]], float]:
    """The naive loop over several prompts, one at a time, with a per-token progress bar."""
    rows: list[list[int]] = []
    with tqdm(
        total=len(prompts) * new_tokens,
        desc="  naive tokens",
        unit="tok",
        leave=False,
        position=1,
        file=sys.stderr,
    ) as inner:
        start = time.perf_counter()
        for prompt, w in zip(prompts, weights, strict=True):
            rows.append(
                naive_pad_decode(model, rm, prompt, new_tokens, w, candidates, inner.update)
            )
        seconds = time.perf_counter() - start
    return rows, seconds
