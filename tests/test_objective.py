"""The TTT objective's alignment, masks, weights and simulated τ, against an explicit loop.

The reference below spells the rule of docs/token-alignment.md out slot by slot: at step j, slot t is
supervised by the target at position p = t + 1 + j (which predicts token p + 1), counts
when token p + 1 is an assistant token of the slot's own document, and is trained on
only when the target's argmax at p is in the draft vocabulary.
"""

import torch

from draftsmith import build_draft
from draftsmith.target.capture import TargetOutputs
from draftsmith.train.objective import TokenBatch, ttt_objective
from tiny_models import tiny_gpt_oss_config

B, T, V_DRAFT, STEPS = 2, 12, 50, 4


def _setup():
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    draft = build_draft(tiny_gpt_oss_config(), draft_vocab_size=V_DRAFT).double()
    d2t = torch.arange(V_DRAFT) * 3  # draft id i -> target id 4i
    t2d = torch.zeros(512, dtype=torch.bool)
    t2d[torch.arange(V_DRAFT) * 4] = True
    draft.set_vocab_mapping(d2t, t2d)
    ids = torch.randint(0, 512, (B, T), generator=g)
    documents = torch.tensor([[1] * 5 + [2] * 5 + [0] * 2, [1] * 12])
    positions = torch.tensor([list(range(5)) + list(range(5)) + [0, 0], list(range(12))])
    loss_mask = (torch.rand(B, T, generator=g) > 0.3).long() * (documents != 0)
    batch = TokenBatch(ids, loss_mask, documents, positions)
    probs = torch.softmax(3 * torch.randn(B, T, V_DRAFT, generator=g, dtype=torch.float64), -1)
    # target argmax: random in-vocabulary target ids, about 20% replaced by an out-of-vocabulary id
    argmax = torch.randint(0, V_DRAFT, (B, T), generator=g) * 4
    argmax[torch.rand(B, T, generator=g) > 0.8] = 1  # id 1 is not in the draft vocabulary
    supervision = TargetOutputs(torch.randn(B, T, 192, generator=g, dtype=torch.float64), probs,
                                t2d[argmax], argmax)
    return draft, batch, supervision


def _reference(draft, batch, sup):
    draft_inputs = torch.cat([batch.input_ids[:, 1:], torch.zeros(B, 1, dtype=torch.long)], 1)
    logits = draft.unroll(draft_inputs, sup.aux_hidden_states, STEPS, batch.document_ids, batch.position_ids)
    weights = [0.8 ** j for j in range(STEPS)]
    weights = [w / sum(weights) for w in weights]
    loss, alive, base, chain = 0.0, {}, 0, [0] * STEPS
    for j in range(STEPS):
        total, count = 0.0, 0
        for b in range(B):
            for t in range(T):
                p = t + 1 + j
                valid = (p + 1 < T and bool(batch.loss_mask[b, p + 1]) and
                         int(batch.document_ids[b, t]) == int(batch.document_ids[b, p + 1]) != 0)
                if valid and bool(sup.in_draft_vocab[b, p]):
                    total = total - (sup.target_probs[b, p] * torch.log_softmax(logits[j, b, t], -1)).sum()
                    count += 1
                draft_id = int(logits[j, b, t].argmax())
                hit = valid and draft_id + int(draft.d2t[draft_id]) == int(sup.target_argmax[b, p])
                if j == 0 and valid:
                    base += 1
                    alive[b, t] = True
                if alive.get((b, t)):
                    alive[b, t] = hit
                    chain[j] += hit
        loss = loss + weights[j] * total / max(count, 1)
    return loss, 1 + sum(c / base for c in chain)


def test_objective_matches_the_slot_by_slot_reference():
    draft, batch, sup = _setup()
    loss, stats = ttt_objective(draft, batch, sup, STEPS)
    want_loss, want_tau = _reference(draft, batch, sup)
    assert torch.allclose(loss.double(), torch.as_tensor(want_loss, dtype=torch.float64), rtol=1e-6)
    assert abs(stats.summary()["tau_sim"] - want_tau) < 1e-9
    assert stats.trained.sum() > 0 and stats.valid.sum() > stats.trained.sum()  # OOV targets were excluded

