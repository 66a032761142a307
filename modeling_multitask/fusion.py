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


@dataclass
class AttentionFusionOutput(ModelOutput):
    """
    fused_representation (`torch.FloatTensor` of shape `(batch, seq, hidden)`):
        The shared representation with each token multiplied by its task-conditioned weight.
    attention_weights (`torch.FloatTensor` of shape `(batch, seq)`):
        The weights: they sum to one over the real tokens of each example and are exactly zero on padding.
    """

    fused_representation: torch.FloatTensor | None = None
    attention_weights: torch.FloatTensor | None = None


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

    How heads use the result: the weights sum to one over the tokens, so `fused.sum(dim=1)` is an attention pooling
    of the sequence, which is what sequence-level heads (classification, regression) receive. A token-level head
    given `fused` directly would see every token shrunk by roughly `1 / length`, so its inputs would change scale with
    the sentence length. [`MultiTaskModel`] therefore gives token heads `fused * n_real_tokens`: uniform attention is
    then the identity (which is where training starts: [`MultiTaskModel`] starts the scores at zero), and the task can still raise
    or lower individual tokens: a task-conditioned gate on each token rather than a length-dependent shrink.

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

    def _task_ids(self, task_id, batch_size: int, device) -> torch.Tensor:
        if isinstance(task_id, int):
            if not 0 <= task_id < self.num_tasks:
                raise ValueError(f"task_id {task_id} is out of range for {self.num_tasks} tasks.")
            return torch.full((batch_size,), task_id, dtype=torch.long, device=device)
        task_id = torch.as_tensor(task_id, device=device).long()
        if task_id.dim() == 0:
            task_id = task_id.expand(batch_size)
        if task_id.shape != (batch_size,):
            raise ValueError(
                f"task_id must be an int or a (batch,) tensor; got shape {tuple(task_id.shape)} "
                f"for a batch of {batch_size}."
            )
        return task_id

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
        task_ids = self._task_ids(task_id, batch_size, shared_representation.device)
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

    def forward(self, shared_representation, task_id, attention_mask=None, output_attentions: bool = False):
        """
        Args:
            shared_representation (`torch.FloatTensor` of shape `(batch, seq, hidden)`): the encoder output.
            task_id (`int` or `torch.LongTensor` of shape `(batch,)`): one task for the batch, or one per example.
            attention_mask (`torch.LongTensor` of shape `(batch, seq)`, *optional*): 1 for real tokens, 0 for padding.
            output_attentions (`bool`, *optional*): also return the weights, as an [`AttentionFusionOutput`].

        Returns:
            The fused representation `(batch, seq, hidden)`, or an [`AttentionFusionOutput`] with the weights.
        """
        weights = self.attention_weights(shared_representation, task_id, attention_mask)
        fused = shared_representation * weights.unsqueeze(-1)  # (batch, seq, hidden)
        if output_attentions:
            return AttentionFusionOutput(fused_representation=fused, attention_weights=weights)
        return fused
