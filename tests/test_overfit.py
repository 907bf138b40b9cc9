"""A tiny captioner memorizes two images' captions exactly (the whole model learns, not just the LM)."""

import torch
import torch.nn.functional as F

from captioning.models.decoding import beam_search, greedy
from captioning.models import Captioner, RNNDecoder, SmallCNN
from captioning.data.vocab import Vocabulary


def test_tiny_model_overfits_two_images_to_their_exact_captions() -> None:
    captions = ["a red circle to the left of a blue square", "two green triangles"]
    vocab = Vocabulary.build(captions)
    images = torch.zeros(2, 3, 32, 32)
    images[0, 0, 8:20, 4:14] = 1.0  # different pictures: the decoder must read v to tell them apart
    images[1, 1, 10:26, 12:28] = 1.0
    tokens = torch.nn.utils.rnn.pad_sequence([torch.tensor(vocab.encode(c)) for c in captions],
                                             batch_first=True)  # (2, T)
    model = Captioner(SmallCNN(channels=(8, 16), out_dim=16), RNNDecoder(len(vocab), 16, 16, 32))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        logits = model(images, tokens[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten(), ignore_index=vocab.pad_id)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    v = model.encode(images)
    assert [vocab.decode(t) for t in greedy(model.decoder, v, max_len=15).tokens.tolist()] == captions
    beams = beam_search(model.decoder, v, beam_size=3, max_len=15).tokens[:, 0]
    assert [vocab.decode(t) for t in beams.tolist()] == captions
