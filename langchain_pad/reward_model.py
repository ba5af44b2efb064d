"""PersRM: the personalized reward model of PAD, on the base model's own frozen trunk.

Read this top to bottom next to the paper (Chen et al., ICLR 2025, section 3):

- ``pi_ref`` is the untouched backbone, here the base model itself.
- ``pihat_theta_i`` (one per preference axis ``i``) is a next-token distribution made
  by the trained parts: a copy of the backbone's top ``k`` decoder layers (the
  *adapter*, fed by the frozen trunk's hidden state below them), then one ``H x H``
  head per axis, then the backbone's own frozen ``lm_head``.
- Token-level features (eq. 5): ``phi_i(s, a) = log pihat_theta_i(a | s) - log pi_ref(a | s)``.
- Personalized reward (eq. 6): ``r(p, s, a) = beta * w_p . phi(s, a)``.

The adapter starts as an exact copy of the top layers and the heads start as the
identity, so an untrained PersRM has ``phi == 0`` everywhere: no reward at all, rather
than noise. Sharing the trunk means that at decoding time the PersRM costs ``k`` layers
on top of the base model's forward pass, not a second model.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from pydantic import BaseModel, Field, field_validator

if TYPE_CHECKING:
    from transformers import PreTrainedModel

__all__ = [
    "FORMAT_VERSION",
    "MAX_ABS_WEIGHT",
    "PersRMConfig",
    "PersonalizedRewardModel",
    "RewardModelMismatchError",
    "backbone_fingerprint",
]

FORMAT_VERSION = 1
MAX_ABS_WEIGHT = 20.0
"""Largest ``|w_i|`` accepted; beyond it rewards swamp the base model's log-probs."""
_WEIGHTS_FILE = "persrm.safetensors"
_CONFIG_FILE = "persrm_config.json"


class RewardModelMismatchError(ValueError):
    """The reward model was trained for another base model, or its files are wrong."""


class PersRMConfig(BaseModel):
    """What is saved beside the weights, and checked when they are loaded."""

    format_version: int = FORMAT_VERSION
    axes: list[str] = Field(min_length=1)
    beta: float = Field(gt=0)
    adapted_layers: int = Field(ge=1)
    backbone: str
    backbone_fingerprint: str
    hidden_size: int
    num_layers: int
    vocab_size: int
    axis_descriptions: dict[str, dict[str, str]] = Field(default_factory=dict)
    """Per axis, what its poles mean: ``{"expertise": {"-": "...", "+": "..."}}``."""

    @field_validator("axes")
    @classmethod
    def _unique_axes(cls, axes: list[str]) -> list[str]:
        if len(set(axes)) != len(axes) or any(not a.strip() for a in axes):
            raise ValueError(f"axis names must be unique and non-empty, got {axes}")
        return axes


def backbone_fingerprint(model: PreTrainedModel) -> str:
    """A short hash of the backbone's shape and of a slice of its embeddings.

    Rounded to bfloat16 so that the same weights loaded in float32 or bfloat16 agree.
    """
    cfg = model.config
    embed: torch.Tensor = model.get_input_embeddings().weight  # type: ignore[assignment]
    sample = embed[:8].detach().to(torch.bfloat16).to(torch.float32).contiguous()
    digest = hashlib.sha256()
    digest.update(f"{cfg.model_type}:{cfg.hidden_size}:{cfg.num_hidden_layers}".encode())
    digest.update(sample.numpy().tobytes())
    return digest.hexdigest()[:16]


def _is_quantized(stack: Any) -> bool:
    from langchain_pad.quantization import Int8WeightOnlyLinear
    from langchain_pad.quantization_int4 import Int4GroupLinear

    return any(isinstance(m, Int8WeightOnlyLinear | Int4GroupLinear) for m in stack.modules())


def _decoder_stack(model: PreTrainedModel) -> Any:
    """The backbone's decoder module (``model.model`` for llama-style models)."""
    inner = getattr(model, "model", None)
    if inner is None or not hasattr(inner, "layers") or not hasattr(inner, "norm"):
        raise RewardModelMismatchError(
            f"{type(model).__name__} has no `model.layers` / `model.norm`: the shared-trunk "
            "PersRM supports decoder-only models laid out like Llama, Qwen, Mistral or Gemma."
        )
    return inner


class PersonalizedRewardModel(torch.nn.Module):
    """Adapter + per-axis heads over a frozen base model; computes ``phi(s, a)``."""

    def __init__(
        self,
        base: PreTrainedModel,
        axes: list[str],
        *,
        beta: float = 1.0,
        adapted_layers: int = 4,
        backbone: str = "",
        axis_descriptions: dict[str, dict[str, str]] | None = None,
        init_from_trunk: bool = True,
    ) -> None:
        """``init_from_trunk``: start the adapter as a copy of the backbone's last layers
        (a new PersRM, to train); False when its weights are loaded next (:meth:`load`),
        which is what works on a quantized (``dtype="int8"`` or ``"int4"``) backbone."""
        super().__init__()
        from transformers import AutoModel

        stack = _decoder_stack(base)
        if init_from_trunk and _is_quantized(stack):
            raise ValueError(
                "A new PersRM starts from the backbone's own layers, and this backbone's "
                "are quantized (dtype='int8' or 'int4'). Train on a float32 or bfloat16 "
                "backbone; the trained PersRM then loads on the quantized one."
            )
        num_layers = len(stack.layers)
        if not 1 <= adapted_layers < num_layers:
            raise ValueError(
                f"adapted_layers must be between 1 and {num_layers - 1} for this backbone, "
                f"got {adapted_layers}."
            )
        # Not registered as a submodule: the base model is frozen, shared and never saved.
        object.__setattr__(self, "base", base)
        self.config = PersRMConfig(
            axes=list(axes),
            beta=beta,
            adapted_layers=adapted_layers,
            backbone=backbone or str(getattr(base.config, "_name_or_path", "")),
            backbone_fingerprint=backbone_fingerprint(base),
            hidden_size=int(base.config.hidden_size),
            num_layers=num_layers,
            vocab_size=int(base.config.vocab_size),
            axis_descriptions=axis_descriptions or {},
        )
        self.trunk_layer = num_layers - adapted_layers
        """Index into ``hidden_states`` of the trunk output the adapter reads."""

        adapter_config = copy.deepcopy(base.config)
        adapter_config.num_hidden_layers = adapted_layers
        adapter_config.vocab_size = 1  # the adapter reads hidden states, never token ids
        adapter_config.pad_token_id = None
        if isinstance(getattr(adapter_config, "layer_types", None), list):
            adapter_config.layer_types = adapter_config.layer_types[-adapted_layers:]
        self.adapter: Any = AutoModel.from_config(adapter_config)  # type: ignore[no-untyped-call]
        if init_from_trunk:
            for i in range(adapted_layers):
                trunk_layer = stack.layers[self.trunk_layer + i]
                self.adapter.layers[i].load_state_dict(trunk_layer.state_dict())
            self.adapter.norm.load_state_dict(stack.norm.state_dict())
        self.adapter.to(dtype=base.dtype)
        hidden = self.config.hidden_size
        eye = torch.eye(hidden, dtype=base.dtype)
        self.heads = torch.nn.Parameter(eye.repeat(len(axes), 1, 1))
        """``[d, H, H]``: head ``i`` maps the adapter's hidden state for axis ``i``."""
        self.train(False)

    # ------------------------------------------------------------------ properties

    @property
    def axes(self) -> list[str]:
        return list(self.config.axes)

    @property
    def beta(self) -> float:
        return self.config.beta

    @property
    def num_axes(self) -> int:
        return len(self.config.axes)

    def weight_vector(self, weights: Mapping[str, float] | Sequence[float]) -> tuple[float, ...]:
        """``w_p`` in this model's axis order, from ``{"axis": value}`` or a vector."""
        if isinstance(weights, Mapping):
            unknown = sorted(set(weights) - set(self.axes))
            if unknown:
                raise ValueError(
                    f"unknown preference axes {unknown}; this reward model's axes are {self.axes}."
                )
            vector = [float(weights.get(axis, 0.0)) for axis in self.axes]
        else:
            vector = [float(v) for v in weights]
            if len(vector) != self.num_axes:
                raise ValueError(
                    f"got {len(vector)} preference weights but the reward model has "
                    f"{self.num_axes} axes {self.axes}; pass one weight per axis or a dict."
                )
        bad = [v for v in vector if not math.isfinite(v) or abs(v) > MAX_ABS_WEIGHT]
        if bad:
            raise ValueError(
                f"preference weights must be finite and within +-{MAX_ABS_WEIGHT}, got {bad}; "
                "large weights make decoding degenerate (see the model card)."
            )
        return tuple(vector)

    @property
    def lm_head_weight(self) -> torch.Tensor:
        base: Any = self.base
        weight: torch.Tensor = base.get_output_embeddings().weight
        return weight

    # ------------------------------------------------------------------ forward pieces

    def adapt(
        self,
        trunk_hidden: torch.Tensor,
        *,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        cache: Any = None,
    ) -> torch.Tensor:
        """Run the adapter layers on the trunk's hidden states: ``[B, T, H] -> [B, T, H]``."""
        out = self.adapter(
            inputs_embeds=trunk_hidden,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=cache is not None,
        )
        hidden: torch.Tensor = out.last_hidden_state
        return hidden

    def axis_hidden(self, adapted: torch.Tensor) -> torch.Tensor:
        """Apply every axis head: ``[..., H] -> [..., d, H]``."""
        return torch.einsum("...j,dij->...di", adapted, self.heads)

    def trunk_hidden(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Frozen trunk output and the base (reference) logits for whole sequences."""
        base: Any = self.base
        with torch.no_grad():
            out = base(
                input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True
            )
        return out.hidden_states[self.trunk_layer], out.logits

    def reference(
        self, prompt_ids: list[int], response_ids: list[int]
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Frozen inputs for a response's features: trunk states, ``log pi_ref(y_t)``, offset.

        Returns the trunk hidden states of the whole sequence ``[T, H]`` (the adapter
        attends over the prompt too), the reference log-probability of each response
        token ``[n]``, and the position whose state predicts the first response token.
        """
        return self.references(prompt_ids, [response_ids])[0]

    def references(
        self, prompt_ids: list[int], responses: list[list[int]]
    ) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
        """:meth:`reference` for several responses to one prompt, running the prompt once.

        The prompt (chat template included) is usually the longer part of a pair, so its
        forward pass is shared through the KV cache, cropped back after each response.
        """
        from transformers import DynamicCache

        if not prompt_ids or not responses or not all(responses):
            raise ValueError("a response's features need a non-empty prompt and response.")
        base: Any = self.base
        prompt_len = len(prompt_ids)
        cache = DynamicCache(config=base.config)
        with torch.no_grad():
            prompt_out = base(
                input_ids=torch.tensor([list(prompt_ids)]),
                cache=cache,
                use_cache=True,
                output_hidden_states=True,
                logits_to_keep=1,
            )
            prompt_trunk = prompt_out.hidden_states[self.trunk_layer][0]
            first_logits = prompt_out.logits[0, -1:]
            results = []
            for response in responses:
                extra = cache.get_seq_length() - prompt_len
                if extra > 0:  # drop the previous response (transformers 5 crops by -count)
                    cache.crop(-extra)
                out = base(
                    input_ids=torch.tensor([list(response)]),
                    cache=cache,
                    use_cache=True,
                    output_hidden_states=True,
                )
                trunk = torch.cat([prompt_trunk, out.hidden_states[self.trunk_layer][0]])
                predicting = torch.cat([first_logits, out.logits[0, :-1]]).float()
                targets = torch.tensor(response).view(-1, 1)
                ref = torch.log_softmax(predicting, dim=-1).gather(-1, targets).squeeze(-1)
                results.append((trunk, ref, prompt_len - 1))
        return results

    def phi_of_tokens(
        self,
        trunk_hidden: torch.Tensor,
        start: int,
        targets: torch.Tensor,
        ref_logprobs: torch.Tensor,
        axes: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Exact features of a response's tokens, normalized over the whole vocabulary.

        ``phi_i(s_t, y_t) = log pihat_theta_i(y_t | s_t) - log pi_ref(y_t | s_t)``
        (eq. 5) for ``t`` in the response: ``[n, d]`` (or ``[n, len(axes)]``). This is
        what training uses; it keeps gradients for the adapter and heads.
        """
        n = targets.shape[0]
        adapted = self.adapt(trunk_hidden.unsqueeze(0))[0, start : start + n]
        heads = self.heads if axes is None else self.heads[axes]
        per_axis = torch.einsum("tj,dij->tdi", adapted, heads)
        logits = per_axis @ self.lm_head_weight.T  # [n, d, V]
        theta_logprob = torch.log_softmax(logits.float(), dim=-1)
        index = targets.view(-1, 1, 1).expand(-1, theta_logprob.shape[1], 1)
        theta = theta_logprob.gather(-1, index).squeeze(-1)
        return theta - ref_logprobs.unsqueeze(-1)

    def sequence_features(self, prompt_ids: list[int], response_ids: list[int]) -> torch.Tensor:
        """``F(y) = sum_t phi(s_t, y_t)`` over a response, ``[d]``: stage 2's input."""
        return self.responses_features(prompt_ids, [response_ids])[0]

    def responses_features(self, prompt_ids: list[int], responses: list[list[int]]) -> torch.Tensor:
        """:meth:`sequence_features` of several responses to one prompt, ``[len, d]``."""
        rows = []
        with torch.no_grad():
            for response, (trunk, ref, start) in zip(
                responses, self.references(prompt_ids, responses), strict=True
            ):
                phi = self.phi_of_tokens(trunk, start, torch.tensor(response), ref)
                rows.append(phi.sum(dim=0))
        return torch.stack(rows)

    # ------------------------------------------------------------------ save / load

    def select_axes(self, names: Sequence[str]) -> None:
        """Keep only these axes' heads (in this order): drop axes that did not learn."""
        unknown = [n for n in names if n not in self.config.axes]
        if unknown or not names:
            raise ValueError(
                f"select_axes needs a non-empty subset of {self.config.axes}, got {list(names)}."
            )
        index = [self.config.axes.index(n) for n in names]
        self.heads = torch.nn.Parameter(self.heads.detach()[index].clone(), requires_grad=False)
        self.config = self.config.model_copy(
            update={
                "axes": list(names),
                "axis_descriptions": {
                    n: d for n, d in self.config.axis_descriptions.items() if n in names
                },
            }
        )

    def save(self, directory: str | Path, *, dtype: torch.dtype | None = None) -> Path:
        """Write the trained parts (adapter + heads) and the config; never the base model.

        ``dtype`` stores the tensors in another precision (bfloat16 halves the file for
        shipping); loading converts them back to the base model's dtype.
        """
        from safetensors.torch import save_file

        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        tensors = {f"adapter.{k}": v.contiguous() for k, v in self.adapter.state_dict().items()}
        tensors["heads"] = self.heads.detach().contiguous()
        if dtype is not None:
            tensors = {k: v.to(dtype) for k, v in tensors.items()}
        tmp_weights = path / (_WEIGHTS_FILE + ".tmp")
        save_file(tensors, str(tmp_weights), metadata={"format_version": str(FORMAT_VERSION)})
        tmp_config = path / (_CONFIG_FILE + ".tmp")
        tmp_config.write_text(json.dumps(self.config.model_dump(), indent=2))
        tmp_weights.replace(path / _WEIGHTS_FILE)
        tmp_config.replace(path / _CONFIG_FILE)
        return path

    @classmethod
    def load(cls, directory: str | Path, base: PreTrainedModel) -> PersonalizedRewardModel:
        """Load trained parts for ``base``; refuse clearly if they belong to another model."""
        from safetensors.torch import load_file

        path = Path(directory)
        config_path, weights_path = path / _CONFIG_FILE, path / _WEIGHTS_FILE
        if not config_path.is_file() or not weights_path.is_file():
            raise RewardModelMismatchError(
                f"{path} is not a PersRM directory: expected {_CONFIG_FILE} and {_WEIGHTS_FILE} "
                "(written by PersonalizedRewardModel.save or `langchain-pad train`)."
            )
        try:
            config = PersRMConfig.model_validate_json(config_path.read_text())
        except ValueError as exc:
            raise RewardModelMismatchError(
                f"{config_path} is not a valid PersRM config: {exc}"
            ) from exc
        if config.format_version != FORMAT_VERSION:
            raise RewardModelMismatchError(
                f"{path} uses PersRM format {config.format_version}; this langchain-pad reads "
                f"format {FORMAT_VERSION}. Retrain it, or use the langchain-pad that wrote it."
            )
        found = backbone_fingerprint(base)
        if found != config.backbone_fingerprint:
            raise RewardModelMismatchError(
                f"The reward model in {path} was trained on backbone '{config.backbone}' "
                f"(fingerprint {config.backbone_fingerprint}), but the base model given has "
                f"fingerprint {found}. PAD's shared-trunk reward model only works with the exact "
                "base model it was trained on: use that base model, or train a PersRM for this one."
            )
        model = cls(
            base,
            config.axes,
            beta=config.beta,
            adapted_layers=config.adapted_layers,
            backbone=config.backbone,
            axis_descriptions=config.axis_descriptions,
            init_from_trunk=False,
        )
        tensors = load_file(str(weights_path))
        heads = tensors.pop("heads")
        adapter_state = {k.removeprefix("adapter."): v for k, v in tensors.items()}
        missing, unexpected = model.adapter.load_state_dict(adapter_state, strict=False)
        if missing or unexpected or heads.shape != model.heads.shape:
            raise RewardModelMismatchError(
                f"{weights_path} does not match its config (missing {missing}, unexpected "
                f"{unexpected}, heads {tuple(heads.shape)} vs {tuple(model.heads.shape)})."
            )
        with torch.no_grad():
            model.heads.copy_(heads.to(model.heads.dtype))
        model.adapter.to(dtype=base.dtype)
        if _is_quantized(_decoder_stack(base)):
            from langchain_pad.quantization import quantize_linears_int8

            # The adapter's layers are most of a PAD step's extra cost: float ones on a
            # quantized backbone cost more (int4 trunk, AMD EPYC, one-off: PAD/plain 0.83-0.88x
            # float32 adapter, 0.99x int8). Trained weights are no 4-bit grid: int8 on int4 too.
            quantize_linears_int8(model.adapter)
        return model
