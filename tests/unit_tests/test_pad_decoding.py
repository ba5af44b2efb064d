"""PAD guided decoding on a tiny random Llama."""

from __future__ import annotations

import pytest

from langchain_pad.engine import GenerationRequest, SamplingParams
from langchain_pad.engine.pad import PADGuidance, PADGuide
from langchain_pad.records import PADStepRecord

from .test_reward_model import perturbed

PROMPTS = [b"first prompt", b"second, longer prompt here", b"third"]


def req(prompt: bytes, weights=None, n: int = 16, **params) -> GenerationRequest:
    guidance = PADGuidance(tuple(weights)) if weights is not None else None
    return GenerationRequest(tuple(prompt), SamplingParams(n, **params), guidance)


@pytest.fixture(scope="module")
def guide(tiny_model):
    return PADGuide(perturbed(tiny_model, scale=0.5))


def test_zero_weights_reproduce_plain_decoding(tiny_engine, guide):
    for prompt in PROMPTS:
        plain = tiny_engine.generate([req(prompt)])[0]
        zero = tiny_engine.generate([req(prompt, (0, 0, 0))], guide)[0]
        assert zero.token_ids == plain.token_ids
        assert not any(r.changed for r in zero.records)
        assert all(r.reward == 0 for r in zero.records)


def test_weights_change_the_output(tiny_engine, guide):
    plain = tiny_engine.generate([req(PROMPTS[0])])[0]
    steered = tiny_engine.generate([req(PROMPTS[0], (5, 0, 0))], guide)[0]
    assert steered.token_ids != plain.token_ids
    assert any(r.changed for r in steered.records)


def test_batch_of_users_equals_each_user_alone(tiny_engine, guide):
    users = [(3, 0, 0), (-3, 0, 0), (0, 3, 0), (0, 0, -3), (0, 0, 0), (1, 1, 1)]
    requests = [req(PROMPTS[i % 3], w) for i, w in enumerate(users)]
    batched = tiny_engine.generate(requests, guide)
    for request, out in zip(requests, batched, strict=True):
        alone = tiny_engine.generate([request], guide)[0]
        assert out.token_ids == alone.token_ids
        assert [r.reward for r in out.records] == pytest.approx(
            [r.reward for r in alone.records], abs=1e-4
        )


def test_vocabulary_and_candidate_normalization_choose_the_same_tokens(tiny_engine, tiny_model):
    rm = perturbed(tiny_model, scale=0.5)
    fast, exact = PADGuide(rm), PADGuide(rm, normalize="vocab")
    for weights in [(4, 0, 0), (0, -4, 2)]:
        a = tiny_engine.generate([req(PROMPTS[1], weights, n=24)], fast)[0]
        b = tiny_engine.generate([req(PROMPTS[1], weights, n=24)], exact)[0]
        assert a.token_ids == b.token_ids
        # rewards differ only by a per-step constant, never in which token wins
        assert [r.base_rank for r in a.records] == [r.base_rank for r in b.records]


def test_records_describe_the_chosen_token(tiny_engine, guide):
    out = tiny_engine.generate([req(PROMPTS[2], (2, -1, 0.5))], guide)[0]
    assert len(out.records) == len(out.token_ids)
    for record, logprob in zip(out.records, out.logprobs, strict=True):
        assert isinstance(record, PADStepRecord)
        assert len(record.features) == 3
        assert record.reward == pytest.approx(
            2 * record.features[0] - record.features[1] + 0.5 * record.features[2],
            rel=1e-4,
            abs=1e-4,
        )
        assert record.base_logprob == pytest.approx(logprob)
        assert record.changed == (record.base_rank != 0)


def test_records_name_the_base_models_own_choice(tiny_engine, guide):
    steered = tiny_engine.generate([req(PROMPTS[0], (5, 0, 0), n=24)], guide)[0]
    assert any(r.changed for r in steered.records)
    for position, record in enumerate(steered.records):
        chosen = steered.token_ids[position]
        assert (record.base_token_id != chosen) == record.changed
        if record.changed:
            # the base model, given the same prefix, picks exactly the named token
            prefix = tuple(PROMPTS[0]) + tuple(steered.token_ids[:position])
            plain = tiny_engine.generate([GenerationRequest(prefix, SamplingParams(1))])[0]
            assert plain.token_ids == [record.base_token_id]


def test_guided_and_plain_rows_share_a_batch(tiny_engine, guide):
    plain_alone = tiny_engine.generate([req(PROMPTS[0])])[0]
    mixed = tiny_engine.generate([req(PROMPTS[0]), req(PROMPTS[1], (4, 0, 0))], guide)
    assert mixed[0].token_ids == plain_alone.token_ids
    assert mixed[0].records == []


def test_top_k_limits_the_candidates(tiny_engine, guide):
    out = tiny_engine.generate([req(PROMPTS[0], (10, 0, 0), top_k=3)], guide)[0]
    assert max(r.base_rank for r in out.records) <= 2


def test_sampled_pad_is_reproducible(tiny_engine, guide):
    def run():
        r = req(PROMPTS[0], (1, 0, 0), temperature=0.9, seed=7)
        return tiny_engine.generate([r], guide)[0].token_ids

    assert run() == run()


def test_wrong_number_of_weights_is_refused(tiny_engine, guide):
    with pytest.raises(ValueError, match="w_p has 2 weights but the reward model has 3 axes"):
        tiny_engine.generate([req(PROMPTS[0], (1, 0))], guide)


def test_bad_guidance_values_are_refused():
    with pytest.raises(ValueError, match="finite"):
        PADGuidance((float("inf"), 0, 0))
    with pytest.raises(ValueError, match="beta"):
        PADGuidance((1, 0, 0), beta=0)


# ---------------------------------------------------------------------- the guard


def floor_req(prompt: bytes, weights, plausibility: float, **params) -> GenerationRequest:
    guidance = PADGuidance(tuple(weights), plausibility=plausibility)
    return GenerationRequest(tuple(prompt), SamplingParams(16, **params), guidance)


def test_the_plausibility_floor_keeps_zero_steering_plain(tiny_engine, guide):
    for prompt in PROMPTS:
        plain = tiny_engine.generate([req(prompt)])[0]
        floored = tiny_engine.generate([floor_req(prompt, (0, 0, 0), 0.5)], guide)[0]
        assert floored.token_ids == plain.token_ids


def test_the_plausibility_floor_bounds_what_a_reward_can_lift(tiny_engine, tiny_model, guide):
    """Every token a floored row picks has at least that share of the best candidate's
    base probability, however strong the steering; without a floor, strong steering
    picks tokens far below it."""
    import torch

    def worst_share(prompt: bytes, tokens: list[int]) -> float:
        ids = torch.tensor([[*prompt, *tokens]])
        with torch.no_grad():
            logprobs = torch.log_softmax(tiny_model(input_ids=ids).logits[0].float(), dim=-1)
        steps = logprobs[len(prompt) - 1 : -1]
        picked = steps.gather(1, torch.tensor(tokens).view(-1, 1)).squeeze(1)
        return float(torch.exp(picked - steps.max(dim=1).values).min())

    free = tiny_engine.generate([floor_req(PROMPTS[0], (8, 0, 0), 0.0)], guide)[0]
    bound = tiny_engine.generate([floor_req(PROMPTS[0], (8, 0, 0), 0.9)], guide)[0]
    assert worst_share(PROMPTS[0], free.token_ids) < 0.9
    assert worst_share(PROMPTS[0], bound.token_ids) >= 0.9 - 1e-4
    # each row keeps its own floor inside one batch
    both = tiny_engine.generate(
        [floor_req(PROMPTS[0], (8, 0, 0), 0.0), floor_req(PROMPTS[0], (8, 0, 0), 0.9)], guide
    )
    assert [o.token_ids for o in both] == [free.token_ids, bound.token_ids]


@pytest.mark.parametrize("bad", [-0.1, 1.0, 2, float("nan"), "0.1", True])
def test_a_bad_plausibility_names_the_range(bad):
    with pytest.raises(ValueError, match=r"plausibility must be a number in \[0, 1\)"):
        PADGuidance((0.0, 0.0, 0.0), plausibility=bad)


# ---------------------------------------------------------------------- gated reward calls


def gate_req(prompt: bytes, weights, plausibility: float, n: int, **params) -> GenerationRequest:
    guidance = PADGuidance(tuple(weights), plausibility=plausibility)
    return GenerationRequest(tuple(prompt), SamplingParams(n, **params), guidance)


@pytest.mark.parametrize("params", [{}, {"temperature": 0.9, "seed": 3}])
def test_gated_steps_pick_what_scoring_every_step_picks(tiny_engine, tiny_model, params):
    """A floor so high that some steps leave only the first choice: those go unscored
    (no reward in their record), and the adapter's catch-up over them gives the same
    picks and the same rewards at the scored steps as scoring every step. Rows of
    different lengths leave the batch while unscored positions are still pending."""
    rm = perturbed(tiny_model, scale=0.5)
    gated, every = PADGuide(rm), PADGuide(rm, gate=False)
    requests = [
        gate_req(PROMPTS[i % 3], w, p, n, **params)
        for i, (w, p, n) in enumerate(
            [((6, 0, 0), 0.995, 24), ((0, -6, 3), 0.99, 9), ((-4, 2, 0), 0.999, 17)]
        )
    ]
    for batch in ([requests[0]], requests):
        fast = tiny_engine.generate(batch, gated)
        slow = tiny_engine.generate(batch, every)
        unscored = scored = 0
        for a, b in zip(fast, slow, strict=True):
            assert a.token_ids == b.token_ids
            assert len(a.records) == len(b.records) == len(a.token_ids)
            for ra, rb in zip(a.records, b.records, strict=True):
                assert rb.reward is not None and rb.features is not None
                assert (ra.base_rank, ra.base_token_id) == (rb.base_rank, rb.base_token_id)
                if ra.reward is None:
                    unscored += 1
                    assert ra.features is None and ra.base_rank == 0 and not ra.changed
                else:
                    scored += 1
                    assert ra.reward == pytest.approx(rb.reward, abs=1e-4)
                    assert ra.features == pytest.approx(rb.features, abs=1e-4)
        assert unscored > 0 and scored > 0  # the case under test happened


def test_without_a_floor_every_step_is_scored(tiny_engine, tiny_model):
    rm = perturbed(tiny_model, scale=0.5)
    out = tiny_engine.generate([gate_req(PROMPTS[1], (3, 0, 0), 0.0, 16)], PADGuide(rm))[0]
    assert all(r.reward is not None for r in out.records)


def test_a_gated_record_still_merges_into_chunk_lists():
    record = PADStepRecord(
        reward=None, features=None, base_logprob=-0.01, base_rank=0, base_token_id=7
    )
    lists = record.chunk_lists()
    assert lists["reward"] == [None] and lists["features"] == [None]
    assert lists["changed"] == [False] and lists["base_token_id"] == [7]


def test_a_rows_gated_records_do_not_depend_on_its_batch_mates(tiny_engine, tiny_model):
    """Beside a row the floor never decides (so the group scores every step), a row's
    own decided steps still read as gated: its records are what it gets alone."""
    guide = PADGuide(perturbed(tiny_model, scale=0.5))
    row = gate_req(PROMPTS[0], (6, 0, 0), 0.995, 24)
    alone = tiny_engine.generate([row], guide)[0]
    beside = tiny_engine.generate([row, gate_req(PROMPTS[1], (2, 0, 0), 0.0, 24)], guide)
    assert beside[0].token_ids == alone.token_ids
    assert [r.reward is None for r in beside[0].records] == [
        r.reward is None for r in alone.records
    ]
    assert any(r.reward is None for r in alone.records)
    assert all(r.reward is not None for r in beside[1].records)


def test_top_candidates_put_the_first_maximum_first():
    # topk orders exact ties as it likes (differently for different k); column 0 must be
    # the token greedy decoding takes, the lowest id of the tied best (argmax's choice)
    import torch

    from langchain_pad.engine.decision import top_candidates

    generator = torch.Generator().manual_seed(0)
    for trial in range(50):
        scores = torch.randn(4, 500, generator=generator)
        low, high = sorted(torch.randperm(500, generator=generator)[:2].tolist())
        scores[:, low] = scores[:, high] = scores.max() + 1
        for k in (1, 2, 10, 50):
            values, ids = top_candidates(scores, k)
            assert ids[:, 0].tolist() == [low] * 4, (trial, k)
            assert (values[:, :-1] >= values[:, 1:]).all()
            reference = scores.topk(k, dim=-1)
            assert torch.equal(values.sort(dim=1).values, reference.values.sort(dim=1).values)
            assert torch.equal(ids.sort(dim=1).values, reference.indices.sort(dim=1).values)


def test_zero_steering_is_plain_decoding_at_exact_ties(tiny_model, byte_tokenizer):
    # every token's logit is tied with its neighbour's (bfloat16 and int8 logits tie
    # often): plain greedy takes the lower id, and so must PAD at zero weights
    import copy

    import torch

    from langchain_pad.engine import DecodingEngine

    from .conftest import EOS_ID

    model = copy.deepcopy(tiny_model)
    with torch.no_grad():
        head = model.get_output_embeddings().weight
        head[1::2] = head[0::2]
    engine = DecodingEngine(
        model, byte_tokenizer, eos_token_ids=frozenset({EOS_ID}), context_length=128
    )
    tied_guide = PADGuide(perturbed(model, scale=0.5))
    for prompt in PROMPTS:
        plain = engine.generate([req(prompt)])[0]
        zero = engine.generate([req(prompt, (0, 0, 0))], tied_guide)[0]
        assert all(t % 2 == 0 for t in plain.token_ids)
        assert zero.token_ids == plain.token_ids
        assert not any(r.changed for r in zero.records)
