"""From a validated chat request and its caller to a :class:`Completion` to run.

The server's limits (model name, messages, ``max_tokens``, stops), the request's
personalization as the chat model's call parameters (the library's one resolver then
decides what wins), and who the caller may name (see ``server_auth``): a keyed caller's
own user is the default ``user``; another is a 403 unless the key is an admin's.
Whether the answer is *guarded* (a multi-user server's rules: no other user's data,
unknown and unusable profiles fall back) or *withheld* (no profile data at all) is
decided here too (see the server's module docstring).
"""

from __future__ import annotations

import uuid
from typing import Any

from .server_auth import LOCAL, Caller, check_user
from .server_messages import to_langchain_messages
from .server_requests import (
    ChatCompletionRequest,
    PadOptions,
    RequestError,
    check_unsupported,
    tool_options,
)
from .server_responses import Completion
from .server_settings import ServerSettings

__all__ = ["CompletionResolver"]


class CompletionResolver:
    """Turns requests into completions under one server's settings."""

    def __init__(self, settings: ServerSettings, model_id: str, store: Any) -> None:
        self.settings = settings
        self.model_id = model_id
        self.store = store
        """The server's profile store (None: ``user`` names no profile)."""

    def resolve(self, request: ChatCompletionRequest, caller: Caller = LOCAL) -> Completion:
        """``request`` from ``caller`` as a completion to run, or the 4xx that refuses it."""
        settings = self.settings
        check_unsupported(request)
        if request.model is not None and request.model != self.model_id:
            raise RequestError(
                404,
                f"The model {request.model!r} does not exist on this server; "
                f"it serves {[self.model_id]}.",
                param="model",
                code="model_not_found",
            )
        if len(request.messages) > settings.max_messages:
            raise RequestError(
                400,
                f"{len(request.messages)} messages; this server accepts {settings.max_messages}.",
                param="messages",
            )
        max_tokens = request.max_completion_tokens or request.max_tokens
        if max_tokens is not None and max_tokens > settings.max_tokens_limit:
            raise RequestError(
                400,
                f"max_tokens={max_tokens} exceeds this server's limit of "
                f"{settings.max_tokens_limit} tokens.",
                param="max_tokens",
            )
        kwargs: dict[str, Any] = {
            "max_tokens": max_tokens or min(settings.default_max_tokens, settings.max_tokens_limit)
        }
        if request.temperature is not None:
            kwargs["temperature"] = request.temperature
        if request.top_p is not None:
            kwargs["top_p"] = request.top_p
        if request.seed is not None:
            kwargs["seed"] = request.seed
        stop = [request.stop] if isinstance(request.stop, str) else request.stop
        if stop:
            if len(stop) > 16 or any(not s for s in stop):
                raise RequestError(400, "stop: up to 16 non-empty strings.", param="stop")
            kwargs["stop"] = stop
        kwargs.update(self._personalization(request, caller))
        kwargs.update(tool_options(request))
        pad = request.pad or PadOptions()
        # a keyed caller sees its own profile (or is an admin): nothing to withhold
        guarded = (settings.multi_user and not caller.keyed) or not caller.admin
        withheld = guarded and not caller.keyed and "user_id" in kwargs and "weights" not in kwargs
        # a preference in words may be answered with another user's learned w_p (the
        # nearest profile): the weights and what gives them back stay out of the answer
        matched = guarded and "preference" in kwargs and "weights" not in kwargs
        if (withheld or matched) and pad.return_rewards:
            raise RequestError(
                400,
                "pad.return_rewards: per-token rewards and features give back the weights "
                "applied, so this multi-user server does not return them for a request "
                "that names a user (user or pad.user_id) or a preference in words "
                "(pad.preference); send pad.weights to see yours.",
                param="pad.return_rewards",
                code="unsupported_parameter",
            )
        return Completion(
            id=f"chatcmpl-{uuid.uuid4().hex}",
            model=self.model_id,
            messages=to_langchain_messages(request.messages),
            kwargs=kwargs,
            strict_user=pad.user_id is not None and not guarded,
            stream=request.stream,
            include_usage=bool(request.stream_options and request.stream_options.include_usage),
            return_rewards=pad.return_rewards,
            withheld=withheld,
            guarded=guarded,
            hide_weights=matched,
        )

    def _personalization(self, request: ChatCompletionRequest, caller: Caller) -> dict[str, Any]:
        """The request's preference as call parameters; the resolver decides what wins."""
        pad = request.pad or PadOptions()
        out: dict[str, Any] = {}
        if pad.weights is not None:
            out["weights"] = pad.weights
        if pad.beta is not None:
            out["beta"] = pad.beta
        if pad.preference is not None:
            out["preference"] = pad.preference
        user_id = pad.user_id
        if caller.keyed:  # the key's user unless the caller may and does name another
            param = "pad.user_id" if user_id is not None else "user"
            user_id = check_user(caller, user_id or request.user, param=param)
            if pad.user_id is None and self.store is None:
                user_id = None  # no store: the key's user has no profile to look up
        elif user_id is None and request.user and self.store is not None:
            user_id = request.user  # OpenAI's `user` names a profile only where one is kept
        if user_id is not None:
            if self.store is None:
                raise RequestError(
                    400,
                    "pad.user_id is looked up in a profile store, but this server has none "
                    "(start it with --profiles PATH); send pad.weights or pad.preference.",
                    param="pad.user_id",
                )
            out["user_id"] = user_id
        return out
