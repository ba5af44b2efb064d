"""PADChatModel: a LangChain chat model over langchain-pad's local decoding engine.

A thin adapter: messages become prompt token ids (``_messages``), parameters become a
``GenerationRequest``, the engine's per-token events become ``AIMessageChunk``s. All
decoding happens on the engine's own thread (``BatchScheduler``), so sync, async,
batch and concurrent callers share batched forward passes.
"""

from __future__ import annotations

import asyncio
import copy
import time
import warnings
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.chat_models import agenerate_from_stream, generate_from_stream
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import ensure_config, get_config_list
from pydantic import ConfigDict, Field, model_validator

from langchain_pad._messages import render_prompt, to_turns
from langchain_pad.models import DEFAULT_MODEL
from langchain_pad.reward_models import DEFAULT_REWARD_MODEL

if TYPE_CHECKING:
    from langchain_pad.engine import BatchScheduler, GenerationRequest, TokenEvent
    from langchain_pad.models import LoadedModel
    from langchain_pad.reward_model import PersonalizedRewardModel

__all__ = ["PADChatModel"]

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
        "beta",
        "user_id",
        "preference",
    }
)
_CONFIGURABLE_PARAMS = ("user_id", "preference")
"""Call parameters also read from ``config["configurable"]`` (chains, LangGraph)."""


class _Call:
    """Everything one model call needs, resolved once; turns engine events into chunks.

    Per-token data goes into every chunk as one-element lists: adding chunks
    concatenates the lists, and a float never meets another float under the same key
    (LangChain refuses to merge two different floats). Floats outside lists (weights,
    beta, the summary) ride on the last chunk only. The lists sit in
    ``generation_info`` and on the message's ``response_metadata`` alike: LangChain
    copies the first into the second only on some paths (``stream``), after some
    callbacks already saw the chunk (``invoke``, v3 event streams), and handlers that
    read only the message (as LangGraph's ``stream_mode="messages"`` does) must find it.
    LangChain folds the two into one dict when it builds the final message.
    """

    def __init__(
        self,
        model_name: str,
        scheduler: BatchScheduler,
        request: GenerationRequest,
        tokenizer: Any = None,
        reward_model: PersonalizedRewardModel | None = None,
        profile: dict[str, Any] | None = None,
    ) -> None:
        self.model_name = model_name
        self.scheduler = scheduler
        self.request = request
        self.tokenizer = tokenizer
        self.axes = list(reward_model.axes) if reward_model is not None else None
        self.default_beta = float(reward_model.beta) if reward_model is not None else None
        self.profile = profile
        self.completion_tokens = 0
        self.summary = _PADSummary(len(self.axes or ()))

    def chunk(self, event: TokenEvent) -> ChatGenerationChunk:
        self.completion_tokens += 1
        last = event.finish_reason is not None
        generation_info: dict[str, Any] = {
            "token_ids": [event.token_id],
            "token_logprobs": [event.logprob],
            "token_texts": [event.token_text],
        }
        if event.record is not None:
            generation_info["pad"] = self._pad_lists(event)
        metadata = copy.deepcopy(generation_info)  # two owners, no shared lists
        message = AIMessageChunk(content=event.text, response_metadata=metadata)
        if last:
            prompt_tokens = len(self.request.prompt_ids)
            message = AIMessageChunk(
                content=event.text,
                chunk_position="last",
                usage_metadata=UsageMetadata(
                    input_tokens=prompt_tokens,
                    output_tokens=self.completion_tokens,
                    total_tokens=prompt_tokens + self.completion_tokens,
                ),
                response_metadata={
                    **metadata,
                    "model_name": self.model_name,
                    "finish_reason": event.finish_reason,
                    "model_provider": "pad",
                    **self._pad_metadata(),
                    **self._profile_metadata(),
                },
            )
        return ChatGenerationChunk(message=message, generation_info=generation_info)

    def _pad_lists(self, event: TokenEvent) -> dict[str, list[Any]]:
        record = event.record or {}
        self.summary.add(record)
        lists: dict[str, list[Any]] = {
            "token_id": [event.token_id],
            "token_text": [event.token_text],
        }
        lists.update({key: [value] for key, value in record.items()})
        if "base_token_id" in record:
            base_id = record["base_token_id"]
            same = base_id == event.token_id
            lists["base_token_text"] = [event.token_text if same else self._piece(base_id)]
        return lists

    def _piece(self, token_id: int) -> str:
        """A token's text on its own: only needed for the base choice PAD replaced."""
        if self.tokenizer is None:
            return ""
        text: str = self.tokenizer.decode(
            [token_id], skip_special_tokens=False, clean_up_tokenization_spaces=False
        )
        return text

    def _profile_metadata(self) -> dict[str, Any]:
        """Which preference profile steered this answer (and which version of it)."""
        return {} if self.profile is None else {"pad_profile": self.profile}

    def _pad_metadata(self) -> dict[str, Any]:
        guidance = self.request.guidance
        if guidance is None or self.axes is None:
            return {}
        beta = guidance.beta if guidance.beta is not None else self.default_beta
        weights = dict(zip(self.axes, guidance.weights, strict=True))
        return {
            "pad_axes": list(self.axes),
            "pad_weights": weights,
            "pad_beta": beta,
            "pad_summary": self.summary.result(self.axes, list(guidance.weights), beta or 0.0),
        }


class _PADSummary:
    """Running totals for the summary the last chunk carries (means, share changed)."""

    def __init__(self, num_axes: int) -> None:
        self.tokens = 0
        self.changed = 0
        self.reward = 0.0
        self.features = [0.0] * num_axes

    def add(self, record: dict[str, Any]) -> None:
        self.tokens += 1
        self.changed += bool(record.get("changed", False))
        self.reward += float(record.get("reward", 0.0))
        for axis, value in enumerate(record.get("features", ())[: len(self.features)]):
            self.features[axis] += float(value)

    def result(self, axes: list[str], weights: list[float], beta: float) -> dict[str, Any]:
        n = max(self.tokens, 1)
        mean_phi = [total / n for total in self.features]
        return {
            "tokens": self.tokens,
            "changed_tokens": self.changed,
            "changed_share": self.changed / n,
            "mean_reward": self.reward / n,
            # r = beta * sum_i w_i * phi_i, so each axis's share of the mean reward is
            # beta * w_i * mean(phi_i); the shares add up to mean_reward.
            "mean_reward_by_axis": {
                axis: beta * w * phi for axis, w, phi in zip(axes, weights, mean_phi, strict=True)
            },
            "mean_features": dict(zip(axes, mean_phi, strict=True)),
        }


class PADChatModel(BaseChatModel):
    """Chat model running a local LLM with langchain-pad's batched decoding engine.

    ```python
    from langchain_pad import PADChatModel

    llm = PADChatModel(max_tokens=64)  # the embedded SmolLM2-135M-Instruct
    print(llm.invoke("Explain a rainbow in one sentence.").content)

    for chunk in llm.stream("Name three colours."):
        print(chunk.content, end="", flush=True)

    answers = llm.batch(["Hi!", "What is 2 + 2?"])  # decoded together, one batch
    ```

    Personalized per user with a preference-profile store (``langchain_pad.profiles``):

    ```python
    from langchain_pad.profiles import SQLiteProfileStore

    llm = PADChatModel(reward_model="path/to/persrm", profile_store=SQLiteProfileStore())
    llm.invoke("Explain DNS.", user_id="ana")  # ana's stored w_p
    llm.invoke("Explain DNS.", preference="I'm a busy surgeon: bottom line first")
    chain.invoke(question, config={"configurable": {"user_id": "ana"}})  # inside chains
    ```

    ``w_p`` per call: explicit ``weights`` > the ``user_id``'s profile > ``preference``
    matched in the store > none; ``response_metadata["pad_profile"]`` says which
    profile (and version) was used.

    ``model`` accepts the embedded default ``"smollm2-135m-instruct"``, a Hugging Face
    id (when the hub is reachable or the model is in its local cache) or a local
    directory written by ``save_pretrained``. Weights load on first use and are shared
    by every instance in the process.
    """

    model_name: str = Field(default=DEFAULT_MODEL, alias="model")
    """Embedded model name, Hugging Face id, or local model directory."""
    temperature: float = Field(default=0.0, ge=0.0)
    """0 decodes greedily; above 0 samples from the temperature-scaled candidates."""
    max_tokens: int = Field(default=256, ge=1)
    """Most new tokens per answer (also capped by the model's context)."""
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=1)
    """Candidate-set size per step; None: whole vocabulary (sampling) or argmax (greedy)."""
    seed: int | None = None
    """Seed of the sampler, for reproducible sampled answers."""
    repetition_penalty: float = Field(default=1.0, gt=0.0)
    stop: list[str] | None = Field(default=None, alias="stop_sequences")
    """Stop sequences, matched on text; the stop text is not returned."""
    timeout: float | None = Field(default=None, gt=0.0)
    """Seconds one call may take before it raises ``TimeoutError``."""
    max_retries: int = Field(default=0, ge=0)
    """Accepted for interface compatibility; local decoding has no transient failures to retry."""
    streaming: bool = False
    """Whether ``invoke`` streams through callbacks (it always decodes token by token)."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Weight dtype; bfloat16 halves memory traffic on CPUs that support it."""
    max_batch_size: int = Field(default=32, ge=1)
    """Most conversations decoded in one batch by the shared decoding thread."""
    reward_model: str | None = DEFAULT_REWARD_MODEL
    """PersRM directory for this base model, or ``"default"``: the one shipped for the
    embedded model (loaded only when a call asks for personalization); None: no PAD."""
    weights: dict[str, float] | list[float] | None = None
    """Default preference ``w_p``: by axis name, or a vector in the reward model's axis order."""
    beta: float | None = Field(default=None, gt=0.0)
    """Reward scale; None uses the reward model's own ``beta``."""
    pad_normalize: Literal["candidates", "vocab"] = "candidates"
    """How ``phi`` is normalized: over the K candidates (fast, same choices) or the vocabulary."""
    profile_store: Any = Field(default=None, exclude=True)
    """A ``langchain_pad.profiles.ProfileStore`` that ``user_id`` and ``preference`` resolve in."""
    user_id: str | None = None
    """Default user whose stored profile supplies ``w_p`` (per call: ``user_id=``)."""
    preference: str | None = None
    """Default preference in words, matched against the store's known profiles."""
    on_unknown_user: Literal["raise", "fallback"] = "raise"
    """A ``user_id`` with no profile: raise, or fall back to ``preference``, then to none."""

    model_config = ConfigDict(populate_by_name=True, protected_namespaces=())

    @model_validator(mode="before")
    @classmethod
    def _warn_unknown_fields(cls, values: Any) -> Any:
        if isinstance(values, dict):
            known = set(cls.model_fields) | {
                f.alias for f in cls.model_fields.values() if f.alias is not None
            }
            unknown = sorted(k for k in values if k not in known)
            if unknown:
                warnings.warn(
                    f"PADChatModel ignores unknown parameter(s) {unknown}: it runs a local "
                    "model (no API key or endpoint is used).",
                    stacklevel=4,
                )
                values = {k: v for k, v in values.items() if k not in unknown}
        return values

    # ------------------------------------------------------------------ LangChain metadata

    @property
    def _llm_type(self) -> str:
        return "pad-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model": self.model_name,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "seed": self.seed,
            "repetition_penalty": self.repetition_penalty,
            "dtype": self.dtype,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> Any:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "pad"
        params["ls_model_name"] = kwargs.get("model", self.model_name)
        params["ls_temperature"] = kwargs.get("temperature", self.temperature)
        params["ls_max_tokens"] = kwargs.get("max_tokens", self.max_tokens)
        stops = stop if stop is not None else self.stop
        if stops:
            params["ls_stop"] = list(stops)
        return params

    # ------------------------------------------------------------------ tokens

    def _loaded(self, model_name: str | None = None) -> LoadedModel:
        from langchain_pad.models import load_model

        return load_model(model_name or self.model_name, dtype=self.dtype)

    def get_token_ids(self, text: str) -> list[int]:
        """Token ids of ``text`` under the model's own tokenizer."""
        ids: list[int] = self._loaded().tokenizer.encode(text, add_special_tokens=False)
        return ids

    def get_num_tokens_from_messages(
        self, messages: list[BaseMessage], tools: Sequence[Any] | None = None
    ) -> int:
        """Prompt length in tokens, chat template included (tools are not supported)."""
        if tools:
            raise NotImplementedError("PADChatModel does not support tool calling yet.")
        return len(render_prompt(self._loaded().tokenizer, to_turns(messages)))

    # ------------------------------------------------------------------ calls

    def _prepare(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> _Call:
        from langchain_pad.engine import GenerationRequest, SamplingParams

        unknown = sorted(k for k in kwargs if k not in _CALL_PARAMS and not k.startswith("ls_"))
        if unknown:
            raise TypeError(
                f"PADChatModel got unknown call parameter(s) {unknown}; "
                f"accepted per call: {sorted(_CALL_PARAMS)} and stop."
            )
        model_name = kwargs.get("model") or self.model_name
        loaded = self._loaded(model_name)
        prompt_ids = render_prompt(loaded.tokenizer, to_turns(messages))
        stops = stop if stop is not None else self.stop
        params = SamplingParams(
            max_new_tokens=kwargs.get("max_tokens", self.max_tokens),
            temperature=kwargs.get("temperature", self.temperature),
            top_p=kwargs.get("top_p", self.top_p),
            top_k=kwargs.get("top_k", self.top_k),
            seed=kwargs.get("seed", self.seed),
            repetition_penalty=kwargs.get("repetition_penalty", self.repetition_penalty),
            stop=tuple(stops or ()),
        )
        weights, profile = self._resolve_preference(kwargs)
        beta = kwargs.get("beta", self.beta)
        if kwargs.get("beta") is not None and weights is None:
            raise ValueError("beta= scales the preference reward, but no weights= were given.")
        reward_model = self._reward_model(loaded, needed=weights is not None or beta is not None)
        guidance = None
        if reward_model is not None and weights is not None:
            from langchain_pad.engine.pad import PADGuidance

            guidance = PADGuidance(reward_model.weight_vector(weights), beta)
        scheduler = self._scheduler(loaded, reward_model)
        request = GenerationRequest(tuple(prompt_ids), params, guidance)
        return _Call(model_name, scheduler, request, loaded.tokenizer, reward_model, profile)

    def _resolve_preference(
        self, kwargs: dict[str, Any]
    ) -> tuple[dict[str, float] | list[float] | None, dict[str, Any] | None]:
        """``w_p`` for this call, and where it came from.

        Order: explicit ``weights`` > the ``user_id``'s stored profile > ``preference``
        text matched in the store > no personalization. Each parameter is taken from
        the call (kwargs or ``.bind``), else ``config["configurable"]``, else the model.
        """
        weights = kwargs.get("weights", self.weights)
        user_id = kwargs.get("user_id", self.user_id)
        preference = kwargs.get("preference", self.preference)
        if weights is not None:
            return weights, ({"source": "weights"} if user_id or preference else None)
        if user_id is None and not preference:
            return None, None
        store = self.profile_store
        if store is None:
            raise ValueError(
                "user_id= and preference= are looked up in a preference-profile store, but "
                "this PADChatModel has none: pass profile_store=SQLiteProfileStore() (or another "
                "ProfileStore)."
            )
        if user_id is not None:
            found = store.get(user_id)
            if found is not None:
                return dict(found.weights), {
                    "source": "user_id",
                    "user_id": found.user_id,
                    "version": found.version,
                    "reward_model_id": found.reward_model.id,
                }
            if self.on_unknown_user == "raise":
                from langchain_pad.profiles import UnknownProfileError

                raise UnknownProfileError(
                    f"no preference profile is stored for user {user_id!r}: create one "
                    "(store.put, store.record_feedback or `langchain-pad profiles add`), or "
                    "set on_unknown_user='fallback' to use preference= or no personalization."
                )
        unknown = {"unknown_user_id": user_id} if user_id is not None else {}
        if not preference:
            return None, {"source": "none", **unknown}
        result = store.match(preference)
        info: dict[str, Any] = {
            "source": "preference" if result.matched else "none",
            "preference": preference,
            "matches": [
                {
                    "user_id": m.profile.user_id,
                    "version": m.profile.version,
                    "similarity": round(m.similarity, 4),
                    "score": round(m.score, 4),
                    **({} if m.probability is None else {"probability": round(m.probability, 4)}),
                }
                for m in result.matches
            ],
            "used": list(result.used),
            **unknown,
        }
        return result.weights, info

    def _reward_model(self, loaded: LoadedModel, *, needed: bool) -> PersonalizedRewardModel | None:
        if self.reward_model is None:
            if needed:
                raise ValueError(
                    "weights= and beta= steer decoding with a personalized reward model, but "
                    "this PADChatModel has none: pass reward_model=<PersRM directory>."
                )
            return None
        if not needed and self.reward_model == DEFAULT_REWARD_MODEL:
            # plain calls never load the shipped PersRM; an explicit one is loaded so that
            # plain and personalized calls share the same decoding waves
            return None
        from langchain_pad._runtime import reward_model_for
        from langchain_pad.reward_models import resolve_reward_model

        return reward_model_for(resolve_reward_model(self.reward_model), loaded)

    def _scheduler(
        self, loaded: LoadedModel, reward_model: PersonalizedRewardModel | None
    ) -> BatchScheduler:
        from langchain_pad._runtime import scheduler_for
        from langchain_pad.reward_models import resolve_reward_model

        return scheduler_for(
            loaded,
            self.dtype,
            self.max_batch_size,
            reward_model,
            resolve_reward_model(self.reward_model)
            if reward_model is not None and self.reward_model is not None
            else None,
            self.pad_normalize,
        )

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        call = self._prepare(messages, stop, kwargs)
        events = call.scheduler.stream(call.request, timeout=self.timeout)
        try:
            for event in events:
                chunk = call.chunk(event)
                if run_manager is not None:
                    run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()  # leaving early cancels the row in its batch

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return generate_from_stream(self._stream(messages, stop, run_manager, **kwargs))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        from langchain_pad.engine.scheduler import generation_timeout

        call = self._prepare(messages, stop, kwargs)
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[TokenEvent | BaseException | None] = asyncio.Queue()

        def deliver(item: TokenEvent | BaseException | None) -> None:
            # Raises RuntimeError once the caller's loop is closed; the scheduler then
            # cancels this request instead of failing the batch.
            loop.call_soon_threadsafe(inbox.put_nowait, item)

        ticket = call.scheduler.submit(call.request, deliver)
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        try:
            while True:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    item = await asyncio.wait_for(inbox.get(), remaining)
                except TimeoutError:
                    raise generation_timeout(self.timeout) from None
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                chunk = call.chunk(item)
                if run_manager is not None:
                    await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
                yield chunk
                if item.finish_reason is not None:
                    return
        finally:
            ticket.cancel()

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return await agenerate_from_stream(self._astream(messages, stop, run_manager, **kwargs))

    # ------------------------------------------------------------------ configurable

    def _configurable_kwargs(
        self, config: RunnableConfig | None, kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        """Add ``user_id``/``preference`` from ``config["configurable"]`` unless given.

        LangChain does not pass ``configurable`` on to ``_generate``/``_stream`` (and
        copies only ``model`` and ``checkpoint_ns`` into run metadata), so the public
        entry points read it here, including a config inherited from an enclosing chain.
        """
        configurable = ensure_config(config).get("configurable") or {}
        extra = {
            key: configurable[key]
            for key in _CONFIGURABLE_PARAMS
            if configurable.get(key) is not None and key not in kwargs
        }
        return {**kwargs, **extra} if extra else kwargs

    def invoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        kwargs = self._configurable_kwargs(config, kwargs)
        return super().invoke(input, config, stop=stop, **kwargs)

    async def _warm_preference(self, kwargs: dict[str, Any]) -> None:
        """Match ``preference`` once in a worker thread before an async call, so that the
        store's first embedding-model load and index build do not block the event loop
        (the call's own match then hits the store's query cache and warm index)."""
        preference = kwargs.get("preference", self.preference)
        store = self.profile_store
        if preference and store is not None and kwargs.get("weights", self.weights) is None:
            await asyncio.to_thread(store.match, preference)

    async def ainvoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AIMessage:
        kwargs = self._configurable_kwargs(config, kwargs)
        await self._warm_preference(kwargs)
        return await super().ainvoke(input, config, stop=stop, **kwargs)

    def stream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[AIMessageChunk]:
        kwargs = self._configurable_kwargs(config, kwargs)
        yield from super().stream(input, config, stop=stop, **kwargs)

    async def astream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:
        kwargs = self._configurable_kwargs(config, kwargs)
        await self._warm_preference(kwargs)
        async for chunk in super().astream(input, config, stop=stop, **kwargs):
            yield chunk

    # ------------------------------------------------------------------ batching

    def _batch_scheduler(self, kwargs: dict[str, Any]) -> BatchScheduler:
        loaded = self._loaded(kwargs.get("model"))
        return self._scheduler(loaded, self._reward_model(loaded, needed=False))

    def _concurrent_configs(
        self, inputs: list[LanguageModelInput], config: RunnableConfig | list[RunnableConfig] | None
    ) -> tuple[list[RunnableConfig], int]:
        configs = get_config_list(config, len(inputs))
        limit = configs[0].get("max_concurrency") or len(inputs)
        width = min(limit, len(inputs), self.max_batch_size)
        return [{**c, "max_concurrency": width} for c in configs], width

    def batch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[AIMessage]:
        """Decode all inputs together: one forward pass per step for the whole batch.

        Each input still gets its own callbacks and run; the calling threads only wait
        while the shared decoding thread runs the batch.
        """
        if len(inputs) <= 1:
            return super().batch(inputs, config, return_exceptions=return_exceptions, **kwargs)
        configs, width = self._concurrent_configs(inputs, config)
        with self._batch_scheduler(kwargs).gathering(width):
            return super().batch(inputs, configs, return_exceptions=return_exceptions, **kwargs)

    async def abatch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[AIMessage]:
        """Async twin of :meth:`batch`."""
        if len(inputs) <= 1:
            return await super().abatch(
                inputs, config, return_exceptions=return_exceptions, **kwargs
            )
        configs, width = self._concurrent_configs(inputs, config)
        with self._batch_scheduler(kwargs).gathering(width):
            return await super().abatch(
                inputs, configs, return_exceptions=return_exceptions, **kwargs
            )
