"""AttentionFusion: a task-specific view of the shared encoder output.

Design (shared/docs/ATTENTION_FUSION.md, from the Jenga-NLP framework): a learned embedding per task is concatenated
with the shared representation at every token, a small feed-forward "attention layer" (Linear + Tanh, then a
scoring vector) gives one score per token, a softmax over the tokens turns the scores into weights, and the shared
representation is multiplied by those weights. This is additive (Bahdanau-style) attention whose query is the task.

Shipped as remote code: imports only torch and transformers.
"""

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers.utils import ModelOutput


HEAD_INPUTS = ("fused", "sequence", "token")


def check_task_ids(task_ids, num_tasks: int, batch_size: int, device=None, task_names=None) -> "int | torch.Tensor":
    """The one check of a `task_ids` argument, shared by the model and the fusion layer: an int (or a 0-d tensor)
    for the whole batch comes back as an int, anything else as a `(batch,)` long tensor on `device`. Raises a
    `ValueError` naming the allowed range for an id out of range or a tensor of the wrong shape."""

    def names() -> str:  # formatted only for an error: with hundreds of tasks, not on every call
        return f" for tasks {list(task_names)}" if task_names is not None else ""

    if isinstance(task_ids, (str, bool, float)) or (
        torch.is_tensor(task_ids) and (task_ids.is_floating_point() or task_ids.is_complex())
    ):
        hint = " (a task name: pass config.task_index(name))" if isinstance(task_ids, str) else ""
        raise ValueError(f"task_ids must be an int or a (batch,) integer tensor{names()}; got {task_ids!r}{hint}.")
    if torch.is_tensor(task_ids) and task_ids.dim() == 0:
        task_ids = int(task_ids)
    if isinstance(task_ids, int):
        if not 0 <= task_ids < num_tasks:
            raise ValueError(f"task_ids must be in [0, {num_tasks}){names()}; got {task_ids}.")
        return task_ids
    try:
        task_ids = torch.as_tensor(task_ids, device=device)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ValueError(
            f"task_ids must be an int or a (batch,) integer tensor{names()}; got {task_ids!r}."
        ) from error
    if task_ids.is_floating_point() or task_ids.dtype == torch.bool:
        raise ValueError(f"task_ids must hold integer task ids{names()}; got a {task_ids.dtype} tensor.")
    task_ids = task_ids.long()
    if task_ids.shape != (batch_size,):
        raise ValueError(
            f"task_ids must be an int or a (batch,) tensor; got shape {tuple(task_ids.shape)} "
            f"for a batch of {batch_size}."
        )
    if bool(((task_ids < 0) | (task_ids >= num_tasks)).any()):
        raise ValueError(f"task_ids must be in [0, {num_tasks}){names()}; got {sorted(set(task_ids.tolist()))}.")
    return task_ids


def attention_pool(weights: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """The weighted sum of the tokens `(batch, hidden)`, without building the (batch, seq, hidden) product."""
    return torch.einsum("bs,bsh->bh", weights, hidden)


@dataclass
class AttentionFusionOutput(ModelOutput):
    """
    fused_representation (`torch.FloatTensor` of shape `(batch, seq, hidden)`):
        The shared representation with each token multiplied by its task-conditioned weight.
    attention_weights (`torch.FloatTensor` of shape `(batch, seq)`):
        The weights: they sum to one over the real tokens of each example and are exactly zero on padding.
    pooled_representation (`torch.FloatTensor` of shape `(batch, hidden)`, *optional*):
        The attention-pooled sequence `sum_t alpha_t h_t` (with `head_input="sequence"`, or `"token"` and
        `token_context=True`).

    With `head_input="sequence"`, `fused_representation` is `None`; with `head_input="token"`, it is the
    length-rescaled fused tokens (see [`AttentionFusion`]).
    """

    fused_representation: torch.FloatTensor | None = None
    attention_weights: torch.FloatTensor | None = None
    pooled_representation: torch.FloatTensor | None = None


class AttentionFusion(nn.Module):
    r"""
    Task-conditioned attention over the tokens of the shared representation.

    For a token representation `h_t` and the task embedding `e_k`:

        score_t  = v^T tanh(W [h_t ; e_k] + b)
        alpha_t  = softmax_t(score_t)            (padding gets exactly zero weight)
        fused_t  = alpha_t * h_t

    `W` is stored as the literal `Linear(2 * hidden, hidden)` over the concatenation, but the forward pass never
    builds the `(batch, seq, 2 * hidden)` tensor: `W [h ; e] = W_h h + W_e e`, and `W_e e + b` is one vector per
    example, so the per-token cost is a single `hidden x hidden` product (half of the literal form).

    How heads use the result (`head_input`, what [`MultiTaskModel`] asks for): the weights sum to one over the tokens,
    so `fused.sum(dim=1)` is an attention pooling of the sequence, which is what sequence-level heads (classification,
    regression) receive (`"sequence"`). A token-level head given `fused` directly would see every token shrunk by
    roughly `1 / length`, so its inputs would change scale with the sentence length; token heads therefore receive
    `fused * n_real_tokens` (`"token"`): uniform attention is then the identity (which is where training starts:
    the model starts the scores at zero), and the task can still raise or lower individual tokens: a
    task-conditioned gate on each token rather than a length-dependent shrink.

    Args:
        config (`PreTrainedConfig`):
            Any config with a `hidden_size` (the encoder's config, or a `MultiTaskConfig`).
        num_tasks (`int`):
            Number of tasks, i.e. of task embeddings.
    """

    def __init__(self, config, num_tasks: int):
        super().__init__()
        hidden_size = config.hidden_size
        self.hidden_size = hidden_size
        self.num_tasks = num_tasks
        self.task_embeddings = nn.Embedding(num_tasks, hidden_size)
        # Acts on [shared ; task_embedding]: the first `hidden_size` input columns read the token, the rest the task.
        self.attention_layer = nn.Linear(2 * hidden_size, hidden_size)
        # No bias: a constant added to every score cancels in the softmax, so it would never get a gradient.
        self.score = nn.Linear(hidden_size, 1, bias=False)

    def project_tokens(self, shared_representation) -> torch.Tensor:
        """`W_h h` for every token `(batch, seq, hidden)`: the task-independent part of the attention layer, which
        can be computed once and reused for every task of the same batch."""
        return F.linear(shared_representation, self.attention_layer.weight[:, : self.hidden_size])

    def attention_weights(
        self, shared_representation, task_id, attention_mask=None, projected_tokens=None
    ) -> torch.Tensor:
        """The `(batch, seq)` token weights of `task_id` (an int, or a `(batch,)` tensor of task ids).

        `projected_tokens`, from [`~AttentionFusion.project_tokens`], skips recomputing the token projection.
        """
        batch_size = shared_representation.shape[0]
        task_ids = check_task_ids(task_id, self.num_tasks, batch_size, shared_representation.device)
        if isinstance(task_ids, int):
            task_ids = torch.full((batch_size,), task_ids, dtype=torch.long, device=shared_representation.device)
        weight_task = self.attention_layer.weight[:, self.hidden_size :]
        task_term = F.linear(self.task_embeddings(task_ids), weight_task, self.attention_layer.bias)  # (batch, hidden)
        if projected_tokens is None:
            projected_tokens = self.project_tokens(shared_representation)
        hidden = torch.tanh(projected_tokens + task_term[:, None, :])  # (batch, seq, hidden)
        scores = self.score(hidden).squeeze(-1).float()  # (batch, seq); softmax in fp32 under bf16/fp16
        if attention_mask is not None:
            mask = attention_mask.to(torch.bool)
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1)
        if attention_mask is not None:
            weights = weights * mask  # exact zeros on padding, even for a row with no real token
        return weights.to(shared_representation.dtype)

    def forward(
        self,
        shared_representation,
        task_id,
        attention_mask=None,
        output_attentions: bool = False,
        head_input: str = "fused",
        token_context: bool = False,
        projected_tokens=None,
    ):
        """
        Args:
            shared_representation (`torch.FloatTensor` of shape `(batch, seq, hidden)`): the encoder output.
            task_id (`int` or `torch.LongTensor` of shape `(batch,)`): one task for the batch, or one per example.
            attention_mask (`torch.LongTensor` of shape `(batch, seq)`, *optional*): 1 for real tokens, 0 for padding.
            output_attentions (`bool`, *optional*): also return the weights, as an [`AttentionFusionOutput`].
            head_input (`str`, *optional*, defaults to `"fused"`): what to build from the weights.
                - `"fused"`: the design's fused representation `alpha_t * h_t`;
                - `"sequence"`: what a sequence-level head reads, the attention-pooled vector `sum_t alpha_t h_t`
                  (the `(batch, seq, hidden)` product is never built);
                - `"token"`: what a token-level head reads, `alpha_t * n * h_t` with `n` the example's number of
                  real tokens, so uniform attention is the identity (see the class docstring).
            token_context (`bool`, *optional*): with `head_input="token"`, also return the pooled vector, the
                sentence context a token head reads next to each token.
            projected_tokens (`torch.FloatTensor`, *optional*): [`~AttentionFusion.project_tokens`] of the same
                input, computed once for several tasks.

        Returns:
            With `head_input="fused"`, the fused representation `(batch, seq, hidden)`, or an
            [`AttentionFusionOutput`] with the weights when `output_attentions`; otherwise always an
            [`AttentionFusionOutput`].
        """
        if head_input not in HEAD_INPUTS:
            raise ValueError(f"head_input must be one of {', '.join(HEAD_INPUTS)}; got {head_input!r}.")
        hidden = shared_representation
        weights = self.attention_weights(hidden, task_id, attention_mask, projected_tokens=projected_tokens)
        fused, pooled = None, None
        if head_input == "sequence":
            pooled = attention_pool(weights, hidden)
        elif head_input == "token":
            real_tokens = hidden.shape[1] if attention_mask is None else attention_mask.sum(dim=1, keepdim=True)
            fused = hidden * (weights * real_tokens).unsqueeze(-1)  # (batch, seq, hidden)
            pooled = attention_pool(weights, hidden) if token_context else None
        else:
            fused = hidden * weights.unsqueeze(-1)  # (batch, seq, hidden)
            if not output_attentions:
                return fused
        return AttentionFusionOutput(
            fused_representation=fused, attention_weights=weights, pooled_representation=pooled
        )
