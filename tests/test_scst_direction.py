"""Self-critical training moves the policy the right way: on a vocabulary small enough to enumerate every
caption, the exact expected CIDEr-D reward rises after SGD steps on the :class:`SelfCritical` loss, and its
update points along the exact gradient of the expected reward (a step the other way must not pass)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import Tensor

from caption_oracle import all_captions, caption_log_probs
from captioning.training.captioning import CaptioningModule
from captioning.training.scst import SelfCritical
from captioning.metrics import CiderDStatistics, tokenize
from captioning.metrics.reward import cider_d_scores
from captioning.models.decoder import RNNDecoder
from captioning.data.vocab import Vocabulary

MAX_LEN, D, LR = 3, 4, 0.5
VOCAB = Vocabulary(["red", "blue"])  # generatable: <UNK> red blue <END>; 1 + 3 + 9 + 27 = 40 captions
CAPTIONS = all_captions(len(VOCAB), MAX_LEN)
REFERENCES = {0: ["red", "red red"], 1: ["blue", "blue blue"], 2: ["red", "red red"], 3: ["blue", "blue blue"]}


class PolicyModule:
    """The parts of :class:`CaptioningModule` that an objective uses, around a bare decoder and fixed features
    (one process: the real :meth:`~CaptioningModule.global_token_mean` divides by this batch's token count)."""

    global_token_mean = CaptioningModule.global_token_mean
    check_finite = CaptioningModule.check_finite

    def __init__(self, decoder: RNNDecoder, v: Tensor, root: Path) -> None:
        self.captioner, self.vocab, self.v = SimpleNamespace(decoder=decoder), VOCAB, v
        self.hparams, self.global_step = SimpleNamespace(max_len=MAX_LEN), 0
        images = [SimpleNamespace(image_id=i, captions=refs) for i, refs in REFERENCES.items()]
        self.trainer = SimpleNamespace(world_size=1, default_root_dir=str(root),
                                       datamodule=SimpleNamespace(images=lambda split: images),
                                       strategy=SimpleNamespace(reduce=lambda t, reduce_op: t))

    def features(self, batch: dict) -> Tensor:
        return self.v

    def log(self, *args, **kwargs) -> None:
        pass

    def log_dict(self, *args, **kwargs) -> None:
        pass


def rewards() -> Tensor:
    """CIDEr-D of every caption against every image's references (training-set statistics), (B, C)."""
    stats = CiderDStatistics.from_references(list(REFERENCES.values()))
    texts = [" ".join(tokenize(VOCAB.decode(cap))) for cap in CAPTIONS]
    return torch.tensor([cider_d_scores(texts, [refs] * len(texts), stats) for refs in REFERENCES.values()])


def expected_reward(decoder: RNNDecoder, v: Tensor, reward: Tensor) -> Tensor:
    """The policy's exact expected reward, averaged over images: sum over all captions of p(c | v) r(c)."""
    return (caption_log_probs(decoder, v, CAPTIONS, MAX_LEN).exp() * reward).sum(dim=1).mean()


@pytest.fixture
def policy(tmp_path: Path) -> PolicyModule:
    torch.manual_seed(0)
    decoder = RNNDecoder(len(VOCAB), D, embed_dim=4, hidden_dim=8, cell="gru")
    return PolicyModule(decoder, torch.randn(len(REFERENCES), D), tmp_path)


def flat_grad(decoder: RNNDecoder) -> Tensor:
    return torch.cat([p.grad.flatten() for p in decoder.parameters()])


def sgd_step(decoder: RNNDecoder, loss: Tensor) -> Tensor:
    """One plain SGD step on ``loss``; returns the update direction (minus the gradient)."""
    decoder.zero_grad()
    loss.backward()
    with torch.no_grad():
        for p in decoder.parameters():
            p.sub_(LR * p.grad)
    return -flat_grad(decoder)


def scst_loss(policy: PolicyModule, objective: SelfCritical) -> Tensor:
    return objective(policy, {"image_id": torch.tensor(list(REFERENCES))})


def test_the_toy_task_leaves_room_to_improve(policy: PolicyModule) -> None:
    """Guards the fixture: rewards differ between captions and the starting policy is far from the best."""
    reward = rewards()
    assert (reward.max(dim=1).values > 3.0).all() and (reward.min(dim=1).values == 0.0).all()
    assert expected_reward(policy.captioner.decoder, policy.v, reward) < 0.5 * reward.max(dim=1).values.mean()


def test_scst_steps_raise_the_exact_expected_reward(policy: PolicyModule) -> None:
    decoder, reward = policy.captioner.decoder, rewards()
    objective = SelfCritical(num_samples=32)
    for step in range(3):
        before = expected_reward(decoder, policy.v, reward)
        decoder.zero_grad()
        before.backward()
        true_ascent = flat_grad(decoder)  # the exact gradient of the expected reward
        torch.manual_seed(step)  # the objective samples from the global generator
        update = sgd_step(decoder, scst_loss(policy, objective))
        after = expected_reward(decoder, policy.v, reward).detach()
        # The sampled policy gradient points along the true one (a sign error gives a cosine near -1) …
        assert torch.cosine_similarity(update, true_ascent, dim=0) > 0.5
        # … and the step raises the expected reward by far more than float noise.
        assert after > before.detach() + 1e-2


def test_a_step_towards_a_low_reward_caption_lowers_the_expected_reward(policy: PolicyModule) -> None:
    """The check above can fail: a step raising the probability of each image's likeliest zero-reward caption
    lowers the expected reward, and so does a step up (not down) the SCST loss."""
    decoder, reward = policy.captioner.decoder, rewards()
    start = {k: t.clone() for k, t in decoder.state_dict().items()}
    before = expected_reward(decoder, policy.v, reward).detach()
    log_probs = caption_log_probs(decoder, policy.v, CAPTIONS, MAX_LEN)  # (B, C)
    worst = log_probs.detach().masked_fill(reward > 0, float("-inf")).argmax(dim=1)  # likeliest reward-0 caption
    sgd_step(decoder, -log_probs.gather(1, worst[:, None]).mean())
    assert expected_reward(decoder, policy.v, reward) < before
    decoder.load_state_dict(start)
    torch.manual_seed(1)
    sgd_step(decoder, -scst_loss(policy, SelfCritical(num_samples=32)))
    assert expected_reward(decoder, policy.v, reward) < before - 1e-2
