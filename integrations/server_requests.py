"""What the server accepts: the request schema, and a clear 400 for everything else.

A request is read in three steps, each of which answers a bad body with a 400 that
names the parameter and the form it accepts (OpenAI's ``{"error": {...}}`` body, so
the ``openai`` client raises ``BadRequestError`` with the message):

1. :func:`parse_body`: the bytes as JSON, nested no deeper than :data:`MAX_JSON_DEPTH`
   and with every string encodable as UTF-8 (JSON's ``\\ud800`` escapes can smuggle a
   lone surrogate in, which the tokenizer later refuses with an unreadable message);
2. :class:`ChatCompletionRequest`: the types and ranges, strictly (``"0.5"`` is not a
   temperature, NaN is not a finite number, ``true`` is not a seed);
3. :func:`check_unsupported` and ``server_messages.to_langchain_messages``: what this
   server does not do, refused instead of silently ignored.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError

from langchain_pad.engine.pad import MAX_BETA
from langchain_pad.engine.types import SEED_MAX, SEED_MIN

if TYPE_CHECKING:
    from starlette.requests import Request

__all__ = [
    "MAX_JSON_DEPTH",
    "ChatCompletionRequest",
    "ChatMessage",
    "PadOptions",
    "RequestError",
    "check_unsupported",
    "parse_body",
    "read_body",
    "validate_request",
]

MAX_JSON_DEPTH = 64
"""Deepest nesting of objects and arrays a request body may have. A chat request needs
about 5; Python's parser recurses, and ~1,000 levels end in a RecursionError."""

StrictFloat = Annotated[float, Strict()]
"""A JSON number (an integer too), never a string or a boolean."""
StrictInt = Annotated[int, Strict()]

_NUMBERS = ConfigDict(allow_inf_nan=False)
"""Python's json reads ``NaN`` and ``Infinity``; no parameter accepts them."""


class RequestError(Exception):
    """An error answered to the client as OpenAI's ``{"error": {...}}`` body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers
        """Response headers the answer needs (``Retry-After``, ``WWW-Authenticate``)."""

    def body(self) -> dict[str, Any]:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        return {
            "error": {
                "message": self.message,
                "type": kind,
                "param": self.param,
                "code": self.code,
            }
        }


# ---------------------------------------------------------------------- schema


class PadOptions(BaseModel):
    """The ``pad`` object of a request: who the answer is for and what to return."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    weights: dict[str, Any] | list[Any] | None = None
    """``w_p`` by axis name, or one weight per axis in the reward model's order (the
    numbers are checked by the library's one weight check, which names the axis)."""
    user_id: str | None = Field(default=None, min_length=1, max_length=256)
    preference: str | None = Field(default=None, min_length=1, max_length=4000)
    beta: StrictFloat | None = Field(default=None, gt=0, le=MAX_BETA)
    return_rewards: bool = False


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[TextPart] | None = None
    name: str | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")

    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """The subset of OpenAI's chat-completions request this server honours.

    Fields OpenAI defines that would change the answer but are not supported here
    (``n > 1``, log-probabilities, penalties, legacy ``functions``) are refused with 400,
    never silently ignored; other unknown fields are ignored. ``tools``, ``tool_choice``,
    ``parallel_tool_calls`` and ``response_format`` pass to the chat model, which
    constrains the answer with a grammar (see :func:`tool_options`).
    """

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: StrictInt | None = Field(default=None, ge=1)
    max_completion_tokens: StrictInt | None = Field(default=None, ge=1)
    temperature: StrictFloat | None = Field(default=None, ge=0, le=2)
    top_p: StrictFloat | None = Field(default=None, gt=0, le=1)
    seed: StrictInt | None = Field(default=None, ge=SEED_MIN, le=SEED_MAX)
    stop: str | list[str] | None = None
    n: StrictInt | None = None
    user: str | None = Field(default=None, max_length=256)
    pad: PadOptions | None = None


_ACCEPTED: dict[str, str] = {
    "body": "a JSON object with model and messages",
    "model": "a string, the served model's name",
    "messages": 'a non-empty list of {"role": ..., "content": ...} objects',
    "messages[].role": "a string: system, developer, user, assistant or tool",
    "messages[].content": 'a string, or a list of {"type": "text", "text": "..."} parts',
    "messages[].name": "a string",
    "stream": "true or false",
    "stream_options": 'an object such as {"include_usage": true}',
    "stream_options.include_usage": "true or false",
    "max_tokens": "an integer >= 1",
    "max_completion_tokens": "an integer >= 1",
    "temperature": "a finite number from 0 to 2 (0 = greedy)",
    "top_p": "a number in (0, 1]",
    "seed": f"an integer from {SEED_MIN} to {SEED_MAX}",
    "stop": "a string (one stop sequence) or a list of up to 16 strings",
    "n": "1",
    "user": "a string of up to 256 characters",
    "pad": "an object with weights, user_id, preference, beta and return_rewards",
    "pad.weights": "{axis: strength} or a list of strengths, one per axis, each in [-1, 1]",
    "pad.user_id": "a string of 1 to 256 characters",
    "pad.preference": "a string of 1 to 4000 characters",
    "pad.beta": f"a finite number in (0, {MAX_BETA:g}]",
    "pad.return_rewards": "true or false",
}

_UNION_TAG = re.compile(r"^(str|int|float|bool|none)$|\[")
"""Pydantic names the branch of a union in an error's location (``'list[TextPart]'``)."""


def _param(loc: tuple[int | str, ...]) -> tuple[str, str, bool]:
    """``("messages[0].content", "messages[].content", in_union)`` for one error location."""
    shown, key = "", ""
    for part in loc:
        if isinstance(part, int):
            shown, key = f"{shown}[{part}]", f"{key}[]"
            continue
        if _UNION_TAG.search(part):
            return shown or "body", key or "body", True
        shown = f"{shown}.{part}" if shown else part
        key = f"{key}.{part}" if key else part
    return shown or "body", key or "body", False


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def validate_request(data: dict[str, Any]) -> ChatCompletionRequest:
    """``data`` as a request, or a 400 naming the first bad parameter and its form."""
    try:
        return ChatCompletionRequest.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        param, key, in_union = _param(tuple(error["loc"]))
        if error["type"] == "extra_forbidden":
            parent = key.rpartition(".")[0]
            accepted = _ACCEPTED.get(parent, "one of the documented fields")
            message = f"{param}: unknown parameter; {parent or 'the body'} is {accepted}."
        else:
            accepted = _ACCEPTED.get(key, "")
            reason = "invalid value" if in_union else error["msg"]
            got = "" if error["type"] == "missing" else f", got {_shown(error.get('input'))}"
            expected = f"; expected {accepted}" if accepted else ""
            message = f"{param}: {reason}{expected}{got}."
        raise RequestError(400, message, param=param, code="invalid_parameter") from None


# ---------------------------------------------------------------------- the body


async def read_body(request: Request, *, limit: int, timeout: float) -> bytes:
    """The whole body: a 413 past ``limit`` bytes, a 408 when it takes over ``timeout`` s."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(
            413, f"the request body is {declared} bytes; this server accepts {limit} at most."
        )
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise RequestError(
                        413, f"the request body exceeds this server's limit of {limit} bytes."
                    )
                chunks.append(chunk)
    except TimeoutError:
        raise RequestError(
            408,
            f"the request body did not arrive within {timeout:g} seconds "
            f"({size} bytes received); send the body with the request.",
            code="body_timeout",
        ) from None
    return b"".join(chunks)


def parse_body(body: bytes) -> dict[str, Any]:
    """The body as a JSON object, shallow enough and valid Unicode, else a 400."""
    try:
        data = json.loads(body)
    except RecursionError:
        raise _too_deep() from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(400, f"the request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise RequestError(400, "the request body must be a JSON object.")
    _check_tree(data)
    return data


def _too_deep() -> RequestError:
    return RequestError(
        400,
        f"the request body nests objects or arrays deeper than {MAX_JSON_DEPTH} levels; "
        "a chat request needs far fewer.",
        code="invalid_json",
    )


def _check_tree(data: dict[str, Any]) -> None:
    """Depth and strings of the whole body, walked without recursion."""
    stack: list[tuple[Any, str, int]] = [(data, "", 1)]
    while stack:
        value, where, depth = stack.pop()
        if isinstance(value, str):
            _check_text(value, where)
        elif isinstance(value, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise _too_deep()
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str):
                    _check_text(key, where or "body")
                    path = f"{where}.{key}" if where else key
                else:
                    path = f"{where}[{key}]"
                stack.append((item, path, depth + 1))


def _check_text(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = text[exc.start]
        raise RequestError(
            400,
            f"{where}: contains a lone UTF-16 surrogate (\\u{ord(bad):04x}) at character "
            f"{exc.start}; send valid Unicode text (a surrogate escape must come as a "
            "high-low pair, or send the character itself).",
            param=where,
            code="invalid_text",
        ) from None


# ---------------------------------------------------------------------- what is refused


_UNSUPPORTED: dict[str, str] = {
    "functions": "the legacy functions field is not supported; send tools",
    "logprobs": "log-probabilities are not returned; use pad.return_rewards for per-token data",
    "top_logprobs": "log-probabilities are not returned",
    "logit_bias": "logit_bias is not supported",
    "frequency_penalty": "frequency_penalty is not supported",
    "presence_penalty": "presence_penalty is not supported",
    "audio": "audio output is not supported",
}


def check_unsupported(request: ChatCompletionRequest) -> None:
    """Refuse what would change the answer but is not done here (400, named)."""
    extra = request.model_extra or {}
    for key, reason in _UNSUPPORTED.items():
        value = extra.get(key)
        if value in (None, False, 0, 0.0, [], {}):
            continue
        raise RequestError(400, f"{key}: {reason}.", param=key, code="unsupported_parameter")
    if request.n not in (None, 1):
        raise RequestError(
            400,
            f"n={request.n}: this server returns one choice per request; send n "
            "requests instead (they are batched together).",
            param="n",
            code="unsupported_parameter",
        )


def tool_options(request: ChatCompletionRequest) -> dict[str, Any]:
    """``tools`` / ``tool_choice`` / ``parallel_tool_calls`` / ``response_format`` as call
    parameters; the chat model checks them (a bad schema or tool choice is a 400)."""
    extra = request.model_extra or {}
    out: dict[str, Any] = {}
    for key in ("tools", "tool_choice", "parallel_tool_calls", "response_format"):
        if extra.get(key) is not None:
            out[key] = extra[key]
    if "tools" in out and not isinstance(out["tools"], list):
        raise RequestError(400, "tools: a list of {'type': 'function', ...} tools.", param="tools")
    return out
