"""The draft as the serving engines run it: a KV cache at the target's positions and a chain.

After each verification the accepted tokens enter the draft's cache as step 0 of
training computes them (``h = fc(aux)`` at position t, the token after t as input);
then the chain drafts k tokens, depth j feeding back the pre-norm hidden state of
depth j-1 and the embedding of the token drafted there. Drafted keys are dropped on
the next :meth:`DraftProposer.extend`, so only committed tokens stay in the cache.
"""

from __future__ import annotations

from typing import Protocol

import torch

from draftsmith.model.attention import KVCache
from draftsmith.model.draft import Eagle3Draft
from draftsmith.target.capture import draft_token_ids_from_d2t


class Proposer(Protocol):
    """What speculative decoding needs from a drafter."""

    def extend(self, aux_hidden_states: torch.Tensor, next_tokens: torch.Tensor, positions: torch.Tensor) -> None:
        """Commit slots at ``positions``: target aux states ``[1, a, 3H]`` and the token after each slot ``[a]``."""

    def propose(self, k: int, temperature: float, generator: torch.Generator | None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``k`` drafted target ids and, when sampling, their distributions ``[k, target_vocab]`` (else None)."""


def sample(probs: torch.Tensor, generator: torch.Generator | None) -> int:
    """One token id drawn from a probability vector (on the generator's device)."""
    return int(torch.multinomial(probs.float(), 1, generator=generator))


class DraftProposer:
    """Chain drafting with an :class:`Eagle3Draft` over its own KV cache.

    ``window`` limits the draft's attention to the last ``window`` positions, as SGLang's
    ``--speculative-draft-sliding-window`` serves a draft trained on short contexts.
    """

    def __init__(self, draft: Eagle3Draft, target_vocab_size: int, window: int | None = None):
        self.draft, self.window = draft.eval(), window
        self.target_ids = draft_token_ids_from_d2t(draft.d2t)
        self.target_vocab_size = target_vocab_size
        self.cache = KVCache()
        self.committed = 0
        self.hidden: torch.Tensor | None = None  # h_next of the last committed slot, [1, 1, H]
        self.position = -1

    def extend(self, aux_hidden_states: torch.Tensor, next_tokens: torch.Tensor, positions: torch.Tensor) -> None:
        self.cache.truncate(self.committed)
        device = self.draft.fc.weight.device
        hidden = self.draft.decode(next_tokens.view(1, -1).to(device), positions.to(device), self.cache,
                                   aux_hidden_states=aux_hidden_states.to(device), window=self.window)
        self.committed = len(self.cache)
        self.hidden, self.position = hidden[:, -1:], int(positions[-1])

    @torch.no_grad()
    def propose(self, k: int, temperature: float, generator: torch.Generator | None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        hidden, tokens, dists = self.hidden, [], []
        for depth in range(k):
            if depth:
                position = torch.tensor([self.position + depth], device=hidden.device)
                hidden = self.draft.decode(tokens[-1].view(1, 1), position, self.cache, hidden=hidden,
                                           window=self.window)
            logits = self.draft.logits(hidden)[0, -1].float()
            if temperature > 0:
                probs = torch.softmax(logits / temperature, dim=-1)
                draft_id = sample(probs, generator)
                full = probs.new_zeros(self.target_vocab_size)
                full[self.target_ids.to(full.device)] = probs
                dists.append(full)
            else:
                draft_id = int(logits.argmax())
            tokens.append(self.target_ids[draft_id].view(1).to(hidden.device))
        drafted = torch.cat(tokens) if tokens else torch.empty(0, dtype=torch.long)
        return drafted, torch.stack(dists) if dists else None
