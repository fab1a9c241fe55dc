"""Speculative decoding: drafting runs what TTT trains, and verification never changes the target's output.

The reference for greedy output is the target recomputing the whole sequence at every step
without any cache (an independent path: no cache classes, no rollback, no sliding-window
trimming), so equality also checks the rollback of gpt-oss's sliding-window layers.
"""

import math

import pytest
import torch

from draftsmith import build_draft
from draftsmith.evaluate import DraftProposer, plain_decode, speculative_decode
from draftsmith.model.attention import KVCache
from draftsmith.target.capture import TargetModel
from tiny_models import CONFIGS, MODEL_CLASSES

KINDS = ("gpt_oss", "llama", "qwen3")
PROMPT, NEW = 40, 30  # gpt-oss: prompt + generation run past its sliding window of 32


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models decode token by token: one thread is faster than two fighting over two shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def targets():
    built = {}
    for kind in KINDS:
        torch.manual_seed(0)
        model = MODEL_CLASSES[kind](CONFIGS[kind]()).eval()
        torch.manual_seed(1)
        prompt = torch.randint(3, 512, (PROMPT,))
        built[kind] = (TargetModel(model), prompt, _reference_greedy(model, prompt, NEW + 8))
    return built


def _reference_greedy(model, prompt, count):
    sequence = prompt.tolist()
    with torch.no_grad():
        for _ in range(count):
            sequence.append(int(model(torch.tensor([sequence])).logits[0, -1].argmax()))
    return sequence[prompt.numel():]


def _draft(target, seed=0):
    torch.manual_seed(seed)
    draft = build_draft(target.config, draft_vocab_size=200)
    with torch.no_grad():
        draft.embed_tokens.weight.copy_(target.model.get_input_embeddings().weight)
    return draft


class OracleProposer:
    """Proposes the target's own greedy continuation, with each token wrong with probability ``noise``."""

    def __init__(self, prompt_length, continuation, noise=0.0, seed=0):
        self.start, self.continuation, self.noise = prompt_length, continuation, noise
        self.rng = torch.Generator().manual_seed(seed)
        self.next_position = None

    def extend(self, aux_hidden_states, next_tokens, positions):
        self.next_position = int(positions[-1]) + 2  # the first drafted token's position

    def propose(self, k, temperature, generator):
        out = []
        for j in range(k):
            index = self.next_position + j - self.start
            token = self.continuation[index]
            if float(torch.rand((), generator=self.rng)) < self.noise:
                token = (token + 1) % 512
            out.append(token)
        return torch.tensor(out), None


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("steps", (1, 3, 7))
def test_untrained_draft_gives_the_targets_greedy_output(targets, kind, steps):
    target, prompt, reference = targets[kind]
    out = speculative_decode(target, DraftProposer(_draft(target), target.vocab_size), prompt, steps, NEW, 8192)
    assert out.tokens == reference[:NEW]
    assert 1.0 <= out.committed / out.rounds < 1.2  # random draft: almost nothing accepted


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("steps", (1, 3, 7))
def test_forced_correct_drafts_give_tau_k_plus_1(targets, kind, steps):
    target, prompt, reference = targets[kind]
    out = speculative_decode(target, OracleProposer(PROMPT, reference), prompt, steps, NEW, 8192)
    assert out.tokens == reference[:NEW]
    assert out.accepted == [steps] * out.rounds
    assert out.committed / out.rounds == steps + 1


@pytest.mark.parametrize("kind", KINDS)
def test_partly_wrong_drafts_roll_the_cache_back_exactly(targets, kind):
    """Rounds accept 0..k drafts, so every rollback length occurs, past gpt-oss's window."""
    target, prompt, reference = targets[kind]
    out = speculative_decode(target, OracleProposer(PROMPT, reference, noise=0.25, seed=3), prompt, 4, NEW, 8192)
    assert out.tokens == reference[:NEW]
    assert 0 in out.accepted and any(0 < a < 4 for a in out.accepted)


def test_plain_decode_is_greedy_decoding(targets):
    target, prompt, reference = targets["gpt_oss"]
    assert plain_decode(target, prompt, NEW, 8192).tokens == reference[:NEW]


def test_generation_stops_at_eos_and_context_end(targets):
    target, prompt, reference = targets["llama"]
    eos = {reference[5]}
    stop = reference.index(reference[5]) + 1
    out = speculative_decode(target, OracleProposer(PROMPT, reference), prompt, 7, NEW, 8192, eos=eos)
    assert out.tokens == reference[:stop]
    assert out.rounds == math.ceil((stop - 1) / 8)  # no round after the one that committed eos
    short = speculative_decode(target, OracleProposer(PROMPT, reference), prompt, 7, NEW, PROMPT + 10)
    assert short.tokens == reference[:10] and max(short.drafted) <= 7


@pytest.mark.parametrize("kind", ("gpt_oss", "llama"))
def test_drafting_with_teacher_forced_tokens_is_unroll(kind):
    """Depth j at the cache's last slot t equals ``unroll`` step j at slot t, at offset positions."""
    torch.manual_seed(0)
    draft = build_draft(CONFIGS[kind](), draft_vocab_size=200)
    for p in draft.parameters():
        torch.nn.init.normal_(p, std=0.3)
    T, steps, offset = 14, 5, 3000
    ids = torch.randint(0, 512, (1, T))
    aux = torch.randn(1, T, 3 * 64)
    positions = torch.arange(T) + offset
    want = draft.unroll(ids, aux, steps, position_ids=positions[None])
    for t in (0, 4, 8):
        cache = KVCache()
        if t >= 2:  # committed in two extensions, with a discarded chain in between, as rounds do
            draft.decode(ids[:, :2], positions[:2], cache, aux_hidden_states=aux[:, :2])
            draft.decode(ids[:, 5:6], positions[2:3] + 7, cache, hidden=torch.randn(1, 1, 64))
            cache.truncate(2)
        hidden = draft.decode(ids[:, min(t, 2):t + 1], positions[min(t, 2):t + 1], cache,
                              aux_hidden_states=aux[:, min(t, 2):t + 1])[:, -1:]
        for j in range(steps):
            if j:
                hidden = draft.decode(ids[:, t + j:t + j + 1], positions[t:t + 1] + j, cache, hidden=hidden)
            assert torch.allclose(draft.logits(hidden)[0, 0], want[j, 0, t], atol=2e-5, rtol=0), (t, j)


def test_draft_window_sees_only_the_last_positions():
    """A slot's keys depend on the slot alone, so a window equals a cache holding only the last slots."""
    torch.manual_seed(0)
    draft = build_draft(CONFIGS["gpt_oss"](), draft_vocab_size=200)
    T, window = 20, 6
    ids, aux, positions = torch.randint(0, 512, (1, T)), torch.randn(1, T, 192), torch.arange(T) + 100
    windowed = draft.decode(ids, positions, KVCache(), aux_hidden_states=aux, window=window)[:, -1]
    recent = draft.decode(ids[:, -window:], positions[-window:], KVCache(), aux_hidden_states=aux[:, -window:])[:, -1]
    full = draft.decode(ids, positions, KVCache(), aux_hidden_states=aux)[:, -1]
    assert torch.allclose(windowed, recent, atol=1e-5)
    assert not torch.allclose(windowed, full, atol=1e-3)


def _chi_square_p_value(observed, expected):
    statistic = float(((observed - expected) ** 2 / expected).sum())
    dof = observed.numel() - 1
    return float(torch.special.gammaincc(torch.tensor(dof / 2, dtype=torch.float64),
                                         torch.tensor(statistic / 2, dtype=torch.float64)))


class TemperedProposer:
    """Drafts from the target's own next-token distribution at half its inverse temperature: a q that
    is too flat, so drafts are accepted, rejected and resampled from the residual in every proportion."""

    def __init__(self, model, prompt):
        self.model, self.sequence = model, prompt.tolist()

    def extend(self, aux_hidden_states, next_tokens, positions):
        self.sequence = self.sequence[: int(positions[0]) + 1] + next_tokens.tolist()

    def propose(self, k, temperature, generator):
        assert k == 1
        with torch.no_grad():
            q = torch.softmax(0.5 * self.model(torch.tensor([self.sequence])).logits[0, -1] / temperature, -1)
        return torch.multinomial(q, 1, generator=generator), q[None]


def _second_token_marginal(model, prompt):
    """Exact distribution of the second sampled token: ``sum_x1 p(x1) p(x2 | x1)``, one batched forward."""
    with torch.no_grad():
        p1 = torch.softmax(model(prompt[None]).logits[0, -1].double(), -1)
        support = torch.nonzero(p1 > 1e-7).flatten()
        batch = torch.cat([prompt.expand(support.numel(), -1), support[:, None]], 1)
        p2 = torch.softmax(model(batch).logits[:, -1].double(), -1)
    return (p1[support, None] * p2).sum(0)


def _goodness_of_fit(counts, marginal, runs):
    """Chi-square p-value over the tokens with expected count >= 5, the rest pooled into one bin."""
    expected = marginal * runs
    big = expected >= 5
    observed = torch.cat([counts[big], counts[~big].sum().view(1)])
    return _chi_square_p_value(observed, torch.cat([expected[big], expected[~big].sum().view(1)]))


@pytest.mark.parametrize("drafter", ("tempered", "draft"))
def test_speculative_sampling_keeps_the_targets_distribution(drafter):
    """Temperature 1: the second generated token (the first one a verification produces) follows the
    target's exact marginal. Chi-square goodness of fit, failing at p < 0.001: a correct
    implementation fails with probability 0.1% per seed (the seed is fixed, so the outcome is
    deterministic). Resampling rejected drafts from p instead of the residual fails the tempered case.
    """
    torch.manual_seed(0)
    model = MODEL_CLASSES["llama"](CONFIGS["llama"]()).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(25.0)  # peaked distributions, as a trained model's, keep the bins few
    target = TargetModel(model)
    prompt = torch.randint(3, 512, (6,))
    if drafter == "draft":  # the real drafter: draft-vocabulary q mapped to target ids
        draft = _draft(target, seed=2)
        with torch.no_grad():
            draft.lm_head.weight.copy_(model.lm_head.weight[:200])
    runs, counts, accepted = 1000 if drafter == "tempered" else 400, torch.zeros(512, dtype=torch.float64), 0
    generator = torch.Generator().manual_seed(0)
    for _ in range(runs):
        proposer = TemperedProposer(model, prompt) if drafter == "tempered" else DraftProposer(draft, 512)
        out = speculative_decode(target, proposer, prompt, 1, 2, 8192, temperature=1.0, generator=generator)
        counts[out.tokens[1]] += 1
        accepted += out.accepted[0]
    assert 0.05 * runs < accepted < 0.95 * runs or drafter == "draft"
    assert _goodness_of_fit(counts, _second_token_marginal(model, prompt), runs) > 1e-3
