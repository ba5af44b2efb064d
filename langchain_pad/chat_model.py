"""PADChatModel: a LangChain chat model over langchain-pad's local decoding engine.

A thin adapter: messages become prompt token ids (``_messages``), the call's preference
becomes ``w_p`` (``preferences``), parameters become a ``GenerationRequest`` decoded on
the model's :class:`~langchain_pad.runtime.PADRuntime`, and the engine's per-token
events become ``AIMessageChunk``s (``_chunks``). It overrides LangChain's private hooks
(``_generate``, ``_stream`` and their async twins); ``batch`` only raises LangChain's
thread-pool width so that every input of a batch reaches the decoding thread at once.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.language_models.chat_models import agenerate_from_stream, generate_from_stream
from langchain_core.language_models.model_profile import ModelProfile
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.tools import BaseTool
from pydantic import ConfigDict, Field, model_validator

from langchain_pad._batching import abatch_in_one_wave, batch_in_one_wave
from langchain_pad._calls import prepare_call
from langchain_pad._chunks import PreparedCall
from langchain_pad._messages import render_prompt, to_turns
from langchain_pad.guard import DEFAULT_PLAUSIBILITY
from langchain_pad.models import DEFAULT_MODEL, DEFAULT_REWARD_MODEL, Dtype
from langchain_pad.preferences import PreferenceResolver, UnknownUser

if TYPE_CHECKING:
    from langchain_pad.engine import TokenEvent
    from langchain_pad.runtime import PADRuntime

__all__ = ["PADChatModel"]


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

    Personalized with the shipped PersRM, per call or per user:

    ```python
    llm.invoke("Explain DNS.", weights={"expertise": -1.0})  # the elementary pole
    llm.invoke("Explain DNS.", preference="explain it like I'm five")  # no store needed

    from langchain_pad.profiles import SQLiteProfileStore

    llm = PADChatModel(profile_store=SQLiteProfileStore())
    llm.invoke("Explain DNS.", user_id="ana")  # ana's stored w_p
    chain.invoke(question, config={"configurable": {"user_id": "ana"}})  # inside chains
    ```

    ``weights`` are strengths in pole units, one per axis in ``[-1, 1]``: -1 / +1 are the
    axis's calibrated poles for the reward model in use (``langchain_pad.calibration``),
    0 no steering; ``raw_weights`` takes raw ``w_p`` (research).

    ``w_p`` per call (``langchain_pad.preferences``): the call's own ``weights`` /
    ``user_id`` / ``preference`` set aside the instance's; then explicit ``weights`` >
    the ``user_id``'s profile > ``preference`` matched against the store (or, with no
    store, the reward model's anchor poles) > none. ``response_metadata["pad_profile"]``
    says which profile (and version) was used.

    Every instance for the same model and dtype shares one
    :class:`~langchain_pad.runtime.PADRuntime` (one engine, one decoding thread) unless
    ``runtime=`` names another.
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
    repetition_penalty: float | None = Field(default=None, gt=0.0)
    """Penalty on tokens already in the prompt or answer (1: off); None: the degeneration
    guard's default, 1.15 for free text and off for tool calls and structured output
    (``langchain_pad.guard``)."""
    stop: list[str] | None = Field(default=None, alias="stop_sequences")
    """Stop sequences, matched on text; the stop text is not returned."""
    timeout: float | None = Field(default=None, gt=0.0)
    """Seconds one call may take before it raises ``TimeoutError``."""
    max_retries: int = Field(default=0, ge=0)
    """Accepted for interface compatibility; local decoding has no transient failures to retry."""
    streaming: bool = False
    """Whether ``invoke`` streams through callbacks (it always decodes token by token)."""
    dtype: Dtype = "float32"
    """Weight dtype; bfloat16 halves memory traffic on CPUs that support it; ``auto``
    picks bfloat16 where the CPU has native bfloat16 arithmetic, float32 elsewhere;
    ``int8`` / ``int4`` store the linear layers' weights in 8 / 4 bits (faster; answers
    differ more from float32's: ``langchain_pad.quantization``, ``quantization_int4``)."""
    runtime: Any = Field(default=None, exclude=True)
    """The :class:`~langchain_pad.runtime.PADRuntime` to decode on; None: the shared one
    for ``model`` and ``dtype``."""
    max_batch_size: int | None = Field(default=None, ge=1)
    """Most conversations decoded in one batch: a setting of the runtime (see
    ``PADRuntime(max_batch_size=...)``); given here, it must agree with the runtime."""
    reward_model: str | None = DEFAULT_REWARD_MODEL
    """PersRM directory for this base model, or ``"default"``: the one shipped for the
    embedded model (loaded only when a call asks for personalization); None: no PAD."""
    weights: dict[str, float] | list[float] | None = None
    """Default preference strengths in ``[-1, 1]`` (-1 / +1: the calibrated poles): by
    axis name, or a vector in the reward model's axis order."""
    raw_weights: dict[str, float] | list[float] | None = None
    """Default raw ``w_p`` (research: no calibration); beats ``weights`` when both are set."""
    plausibility: float = Field(default=DEFAULT_PLAUSIBILITY, ge=0.0, lt=1.0)
    """The degeneration guard of PAD rows: only candidates whose base probability is at
    least this share of the best candidate's may be picked (0: off). See the model card
    for the measurement that chose the default."""
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
    unknown_user: UnknownUser = "error"
    """A ``user_id`` with no profile: raise (``"error"``), or fall back to ``preference``,
    then to none (``"fallback"``)."""
    steer_tool_calls: bool = False
    """Whether PAD steers the tokens of a tool call too; by default a call's arguments
    are written unsteered (they are data for the tool) and the answers around it are
    steered."""
    reveal_matched_users: bool = True
    """Whether a ``preference`` match's metadata names the other users it matched; set
    False where one process answers many users (anchors stay named either way)."""

    model_config = ConfigDict(populate_by_name=True, protected_namespaces=())

    @model_validator(mode="before")
    @classmethod
    def _check_fields(cls, values: Any) -> Any:
        if not isinstance(values, dict):
            return values
        if "on_unknown_user" in values:  # the name before the resolver was unified
            old = values.pop("on_unknown_user")
            warnings.warn(
                "on_unknown_user= is now unknown_user= ('error' | 'fallback').",
                DeprecationWarning,
                stacklevel=4,
            )
            values.setdefault("unknown_user", "error" if old == "raise" else old)
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

    @model_validator(mode="after")
    def _check_runtime(self) -> PADChatModel:
        runtime = self.runtime
        if runtime is None:
            return self
        from langchain_pad.runtime import PADRuntime

        if not isinstance(runtime, PADRuntime):
            raise ValueError(f"runtime must be a PADRuntime, got {type(runtime).__name__}.")
        if "model_name" not in self.model_fields_set:
            self.model_name = runtime.model
        if "dtype" not in self.model_fields_set:
            self.dtype = runtime.dtype
        from langchain_pad.models import resolve_dtype

        if (self.model_name, resolve_dtype(self.dtype)) != (runtime.model, runtime.dtype):
            raise ValueError(
                f"model={self.model_name!r}, dtype={self.dtype!r} differ from the runtime's "
                f"({runtime.model!r}, {runtime.dtype!r}); leave them out to use the runtime's."
            )
        return self

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

    def _resolve_model_profile(self) -> ModelProfile | None:
        """What LangChain's agents read: tools and structured output are supported."""
        return ModelProfile(
            tool_calling=True,
            tool_choice=True,
            tool_call_streaming=True,
            structured_output=True,
            text_inputs=True,
            text_outputs=True,
            temperature=True,
        )

    # ------------------------------------------------------------------ runtime and tokens

    def get_runtime(self, model_name: str | None = None) -> PADRuntime:
        """The runtime this model decodes on (the shared one unless ``runtime=`` was given)."""
        from langchain_pad.runtime import PADRuntime

        name = model_name or self.model_name
        if self.runtime is not None and name == self.runtime.model:
            runtime: PADRuntime = self.runtime
        else:
            runtime = PADRuntime.shared(name, self.dtype)
        if self.max_batch_size is not None and self.max_batch_size != runtime.max_batch_size:
            raise ValueError(
                f"max_batch_size={self.max_batch_size} disagrees with the runtime of "
                f"{name!r}, which decodes up to {runtime.max_batch_size} rows per batch for "
                "every model that uses it. Set it once on the runtime (runtime.max_batch_size "
                "= N), or pass runtime=PADRuntime(model, max_batch_size=N) for a separate one."
            )
        return runtime

    def get_token_ids(self, text: str) -> list[int]:
        """Token ids of ``text`` under the model's own tokenizer."""
        ids: list[int] = self.get_runtime().loaded.tokenizer.encode(text, add_special_tokens=False)
        return ids

    def get_num_tokens_from_messages(
        self, messages: list[BaseMessage], tools: Sequence[Any] | None = None
    ) -> int:
        """Prompt tokens of ``messages``, chat template and the tools' prompt included."""
        turns = to_turns(messages, tool_format="hermes" if tools else "summary")
        if tools:
            from langchain_pad.tools import add_tools_prompt, convert_tools

            turns = add_tools_prompt(turns, convert_tools(list(tools)))
        return len(render_prompt(self.get_runtime().loaded.tokenizer, turns))

    # ------------------------------------------------------------------ tools, structure

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | dict[str, Any] | bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools the model may call; calls are grammar-constrained, so always valid.

        ``tool_choice``: ``"auto"`` (default: a router decides whether the request needs
        a tool; the model then writes one valid call, or answers in prose), ``"any"`` /
        ``"required"`` (one call), ``"none"``, or a tool's name. Tools are checked here:
        a parameter type the grammar cannot express, or a ``tool_choice`` naming no
        bound tool, is an error now rather than at the first call. Extra keywords
        (``strict``, ``parallel_tool_calls=False``, ...) are passed on to each call.
        """
        from langchain_pad.tools import convert_tools, normalize_tool_choice

        specs = convert_tools(list(tools))
        normalize_tool_choice(tool_choice, specs)
        return self.bind(tools=[spec.openai() for spec in specs], tool_choice=tool_choice, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type | None = None,
        *,
        method: Literal["json_schema", "function_calling", "json_mode"] = "json_schema",
        include_raw: bool = False,
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, Any]:
        """Answers that always fit ``schema`` (pydantic, TypedDict or JSON schema).

        The answer is decoded under the schema's grammar (``json_schema``: the JSON
        itself; ``function_calling``: one constrained tool call; ``json_mode``: any JSON
        object), so it parses unless the token budget runs out first (then the parser
        raises, or with ``include_raw=True`` reports ``parsing_error``). ``strict`` is
        accepted for compatibility: constrained output is always strict.
        """
        from langchain_pad._structured import structured_runnable

        if kwargs:
            raise TypeError(f"with_structured_output got unknown argument(s) {sorted(kwargs)}.")
        return structured_runnable(self, schema, method=method, include_raw=include_raw)

    # ------------------------------------------------------------------ one call

    def _prepare(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> PreparedCall:
        return prepare_call(self, messages, stop, kwargs)

    def preference_resolver(self) -> PreferenceResolver:
        """The resolver this model decides each call's ``w_p`` with (its store and policy)."""
        return PreferenceResolver(
            self.profile_store,
            unknown_user=self.unknown_user,
            reveal_matched_users=self.reveal_matched_users,
        )

    # ------------------------------------------------------------------ LangChain's hooks

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        call = self._prepare(messages, stop, kwargs)
        events = call.runtime.stream(call.request, timeout=self.timeout)
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
        from langchain_pad.engine.tickets import generation_timeout

        # Tokenizing and profile look-ups block (SQLite, the embedding model's first
        # load): off the event loop. to_thread copies the context, configurable included.
        call = await asyncio.to_thread(self._prepare, messages, stop, kwargs)
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[TokenEvent | BaseException | None] = asyncio.Queue()

        def deliver(item: TokenEvent | BaseException | None) -> None:
            # Raises RuntimeError once the caller's loop is closed; the scheduler then
            # cancels this request instead of failing the batch.
            loop.call_soon_threadsafe(inbox.put_nowait, item)

        ticket = call.runtime.submit(call.request, deliver)
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

    # ------------------------------------------------------------------ batching

    def batch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[AIMessage]:
        """Every input submitted at once, each in its own config's context: one wave.

        See :func:`langchain_pad._batching.batch_in_one_wave` for why LangChain's own
        ``batch`` does not do this here.
        """
        return batch_in_one_wave(self, inputs, config, return_exceptions, kwargs)

    async def abatch(
        self,
        inputs: list[LanguageModelInput],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[AIMessage]:
        """Async twin of :meth:`batch`."""
        return await abatch_in_one_wave(self, inputs, config, return_exceptions, kwargs)
