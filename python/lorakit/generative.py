"""The torch reference of generative classification (docs/generative.md): label scoring on one prompt pass with its
KV cache, few-shot prompts, and free generation with the answer parsed as JSON.

`model` is any *ForCausalLM (the unmerged PeftModel or the merged model), in eval mode, fp32, on CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .prompt import Example, PromptTokens, check_labels, parse_answer


@dataclass
class LabelScores:
    labels: list[str]
    scores: torch.Tensor  # [C] summed natural-log probabilities of each answer
    next_logits: torch.Tensor  # [V] logits after the last prompt token
    tokens_in: int = 0
    tokens_used: int = 0
    prompt_tokens: int = 0

    @property
    def probabilities(self) -> torch.Tensor:
        return torch.softmax(self.scores, dim=0)

    @property
    def label(self) -> str:
        return self.labels[int(torch.argmax(self.scores))]  # torch.argmax returns the first of ties


@torch.no_grad()
def score_answers(model: Any, prompt: Sequence[int], answers: Sequence[Sequence[int]]) -> tuple[torch.Tensor,
                                                                                               torch.Tensor]:
    """(scores [C], next-token logits [V]): the prompt runs once; the answers continue its cache as one batch."""
    if not answers or any(not answer for answer in answers):
        raise ValueError("every answer needs at least one token")
    ids = torch.tensor([list(prompt)], dtype=torch.int64)
    out = model(input_ids=ids, use_cache=True, logits_to_keep=1)  # the LM head on the last position only
    next_logits = out.logits[0, -1].to(torch.float32)
    scores = torch.log_softmax(next_logits, dim=-1)[[answer[0] for answer in answers]].clone()
    longest = max(len(answer) for answer in answers)
    if longest == 1:
        return scores, next_logits
    count, width = len(answers), longest - 1
    cache = out.past_key_values
    cache.batch_repeat_interleave(count)
    inputs = torch.zeros(count, width, dtype=torch.int64)
    targets = torch.zeros(count, width, dtype=torch.int64)
    real = torch.zeros(count, width, dtype=torch.bool)
    for row, answer in enumerate(answers):  # continuation input t is answer[t], predicting answer[t + 1]
        n = len(answer) - 1
        if n:
            inputs[row, :n] = torch.tensor(list(answer[:-1]))
            targets[row, :n] = torch.tensor(list(answer[1:]))
            real[row, :n] = True
    length = len(prompt)
    mask = torch.cat([torch.ones(count, length, dtype=torch.int64), real.to(torch.int64)], dim=1)
    positions = (length + torch.arange(width)).expand(count, width)
    logits = model(input_ids=inputs, attention_mask=mask, position_ids=positions, past_key_values=cache,
                   use_cache=True).logits.to(torch.float32)
    logp = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return scores + torch.where(real, logp, torch.zeros_like(logp)).sum(dim=1), next_logits


@torch.no_grad()
def score_answers_plainly(model: Any, prompt: Sequence[int], answers: Sequence[Sequence[int]]) -> torch.Tensor:
    """The same scores without a cache, one full sequence per answer: the check on score_answers."""
    scores = []
    for answer in answers:
        ids = torch.tensor([list(prompt) + list(answer)], dtype=torch.int64)
        logp = torch.log_softmax(model(input_ids=ids).logits[0].to(torch.float32), dim=-1)
        start = len(prompt) - 1
        scores.append(sum(float(logp[start + t, token]) for t, token in enumerate(answer)))
    return torch.tensor(scores, dtype=torch.float32)


def classify(model: Any, tokens: PromptTokens, text: str, labels: Sequence[str],
             examples: Sequence[Example] = (), max_seq_len: int | None = None) -> LabelScores:
    labels = check_labels(labels)
    prompted = tokens.prompt(text, labels, examples)
    if max_seq_len is not None:
        tokens.check_length(prompted.ids, labels, max_seq_len)
    scores, next_logits = score_answers(model, prompted.ids, [tokens.answer(label) for label in labels])
    return LabelScores(labels, scores, next_logits, prompted.tokens_in, prompted.tokens_used, len(prompted.ids))


@dataclass
class Generated:
    text: str  # the generated continuation, decoded
    label: str | None  # the parsed label, None when the answer is not valid JSON with a string label
    valid: bool  # parsed and among the labels
    error: str | None = None
    token_ids: list[int] = field(default_factory=list)


@torch.no_grad()
def generate(model: Any, tokens: PromptTokens, text: str, labels: Sequence[str],
             examples: Sequence[Example] = (), max_new_tokens: int = 32) -> Generated:
    """Greedy free generation after the prompt; the answer `{"label": ...}` is parsed, a bad one is reported."""
    labels = check_labels(labels)
    ids = torch.tensor([tokens.prompt(text, labels, examples).ids], dtype=torch.int64)
    out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
    cache, generated = out.past_key_values, []
    position = ids.shape[1]
    for _ in range(max_new_tokens):
        token = int(torch.argmax(out.logits[0, -1]))
        if token == tokens.eos_id:
            break
        generated.append(token)
        out = model(input_ids=torch.tensor([[token]]), past_key_values=cache, use_cache=True,
                    position_ids=torch.tensor([[position]]))
        position += 1
    continuation = tokens.tokenizer.decode(generated, skip_special_tokens=False)
    label, error = parse_answer(tokens.spec.answer_prefix, continuation)
    if label is not None and label not in labels:
        error = f"label {label!r} is not among the labels"
    return Generated(continuation, label, label is not None and error is None, error, generated)
