"""One call of :class:`~langchain_pad.PADChatModel`: messages and parameters -> a request.

Everything a call needs is resolved here, on the caller's thread, before anything
reaches the decoding thread: the prompt's token ids, the sampling parameters (checked
where they are built, so a bad value fails its own call only), and the preference's
``w_p`` (through the one resolver, :mod:`langchain_pad.preferences`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from langchain_core.runnables.config import ensure_config

from langchain_pad._chunks import PreparedCall
from langchain_pad._constraints import constraints_for
from langchain_pad._messages import render_prompt
from langchain_pad.guard import repetition_penalty_for
from langchain_pad.preferences import PreferenceQuery

if TYPE_CHECKING:
    from langchain_core.messages import BaseMessage

    from langchain_pad.chat_model import PADChatModel

_CALL_PARAMS = frozenset(
    {
        "model",
        "temperature",
        "max_tokens",
        "top_p",
        "top_k",
        "seed",
        "repetition_penalty",
        "weights",
        "raw_weights",
        "beta",
        "plausibility",
        "user_id",
        "preference",
        "tools",
        "tool_choice",
        "response_format",
        "parallel_tool_calls",
        "strict",
    }
)
_CONFIGURABLE_PARAMS = ("user_id", "preference")
"""Call parameters also read from the run's ``configurable`` (chains, LangGraph)."""


def prepare_call(
    model: PADChatModel, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
) -> PreparedCall:
    """The request of one call, with what its chunks need to describe it."""
    from langchain_pad.engine import GenerationRequest, SamplingParams
    from langchain_pad.engine.pad import PADGuidance, check_beta, check_plausibility

    unknown = sorted(k for k in kwargs if k not in _CALL_PARAMS and not k.startswith("ls_"))
    if unknown:
        raise TypeError(
            f"PADChatModel got unknown call parameter(s) {unknown}; "
            f"accepted per call: {sorted(_CALL_PARAMS)} and stop."
        )
    if kwargs.get("parallel_tool_calls"):
        raise ValueError(
            "parallel_tool_calls=True: this model makes one tool call per answer; pass "
            "parallel_tool_calls=False or leave it out."
        )
    model_name = kwargs.get("model") or model.model_name
    runtime = model.get_runtime(model_name)
    tokenizer = runtime.loaded.tokenizer
    max_tokens = kwargs.get("max_tokens", model.max_tokens)
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ValueError(
            f"max_tokens must be an integer >= 1 (new tokens to generate), got {max_tokens!r}."
        )
    tools = kwargs.get("tools")
    constraints = constraints_for(
        messages,
        tools=tools,
        tool_choice=kwargs.get("tool_choice"),
        response_format=kwargs.get("response_format"),
        max_tokens=max_tokens,
        router=runtime.tool_router if tools else None,
    )
    prompt_ids = render_prompt(tokenizer, constraints.turns)
    stops = stop if stop is not None else model.stop
    if isinstance(stops, str):
        stops = [stops]  # one stop sequence, as LangChain and the OpenAI API read it
    params = SamplingParams(
        max_new_tokens=max_tokens,
        temperature=kwargs.get("temperature", model.temperature),
        top_p=kwargs.get("top_p", model.top_p),
        top_k=kwargs.get("top_k", model.top_k),
        seed=kwargs.get("seed", model.seed),
        repetition_penalty=repetition_penalty_for(
            kwargs.get("repetition_penalty", model.repetition_penalty),
            constrained=constraints.grammar is not None,
        ),
        stop=tuple(stops or ()),
    )
    beta = check_beta(kwargs.get("beta", model.beta))
    plausibility = check_plausibility(kwargs.get("plausibility", model.plausibility))
    defaults = PreferenceQuery(
        model.weights, model.user_id, model.preference, raw_weights=model.raw_weights
    )
    query = call_query(kwargs).over(defaults)
    if beta is not None and query.empty:
        raise ValueError("beta= scales the preference reward, but no weights= were given.")
    guidance, axes, profile = None, None, None
    if not query.empty:
        if model.reward_model is None:
            raise ValueError(
                "weights=, user_id= and preference= steer decoding with a personalized "
                "reward model, but this PADChatModel has reward_model=None: pass "
                "reward_model='default' or a PersRM directory."
            )
        reward_model = model.reward_model
        ref = runtime.reward_model_ref(reward_model)
        resolved = model.preference_resolver().resolve(
            query,
            axes=ref.axes,
            reward_model_id=ref.id,
            anchors=lambda: runtime.anchor_store(reward_model),
            calibration=lambda: runtime.calibration(reward_model),
        )
        profile = resolved.metadata
        if constraints.calls and not model.steer_tool_calls:
            # a tool call's arguments are data: steered, a small model writes them worse
            profile = {**(profile or {}), "steered": False, "why": "tool call"}
        elif resolved.weights is not None:
            rm = runtime.reward_model(reward_model)
            axes = list(rm.axes)
            guidance = PADGuidance(
                resolved.weights,
                beta,
                reward_model=rm,
                normalize=model.pad_normalize,
                plausibility=plausibility,
            )
            beta = beta if beta is not None else float(rm.beta)
    grammar = None
    if constraints.grammar is not None:
        grammar = runtime.grammar_compiler.compile(constraints.grammar)
    request = GenerationRequest(tuple(prompt_ids), params, guidance, grammar)
    call = PreparedCall(model_name, runtime, request, tokenizer, axes, beta, profile)
    if guidance is not None:
        call.strengths = resolved.strengths
    if constraints.tool_names:
        from langchain_pad.tools import ToolCallStream

        call.tool_stream = ToolCallStream()
    return call


def call_query(kwargs: dict[str, Any]) -> PreferenceQuery:
    """The call's own layer: keywords (and ``.bind``), else the run's ``configurable``.

    LangChain hands ``configurable`` to a model only through the run's context
    (chains and LangGraph nodes set it); ``ensure_config()`` reads it there.
    """
    configurable = ensure_config().get("configurable") or {}
    values = {key: kwargs.get(key) for key in ("weights", "user_id", "preference", "raw_weights")}
    for key in _CONFIGURABLE_PARAMS:
        if values[key] is None and configurable.get(key) is not None:
            values[key] = configurable[key]
    return PreferenceQuery(**values)
