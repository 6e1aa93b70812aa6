"""Per-step PRM rewards: scores on step-end tokens, by hand; character offsets to tokens with multi-char tokens."""

import pytest
import torch

from lit_align.ops.step_rewards import step_token_rewards
from lit_align.rewards.prm import ProcessRewardScorer, step_end_tokens


def test_steps_and_deltas_by_hand():
    scores, tokens = [[0.9, 0.2], [], [0.5]], [[3, 7], [], [0]]
    steps = step_token_rewards(scores, tokens, (3, 10), "steps")
    expected = torch.zeros(3, 10)
    expected[0, 3], expected[0, 7], expected[2, 0] = 0.9, 0.2, 0.5
    assert torch.allclose(steps, expected)
    deltas = step_token_rewards(scores, tokens, (3, 10), "deltas")
    expected[0, 7] = 0.2 - 0.9
    assert torch.allclose(deltas, expected)
    assert deltas[0].sum().item() == pytest.approx(0.2)  # telescopes to the last step's score
    with pytest.raises(AssertionError, match="2 step scores for 1 step ends"):
        step_token_rewards([[0.1, 0.2]], [[1]], (1, 4), "steps")


class _Pieces:
    """A tokenizer whose tokens are whole strings (ids index ``pieces``); 0 is a special token."""

    pieces = ["<eos>", "23+45", "=68", "\n", "68-17=", "51", "\n6", "8"]

    def decode(self, ids, skip_special_tokens=False):
        return "".join(self.pieces[i] for i in ids if not (skip_special_tokens and i == 0))


def test_step_ends_map_to_the_token_that_completes_them():
    scorer = ProcessRewardScorer.__new__(ProcessRewardScorer)
    scorer.separator = "\n"
    text = "23+45=68\n68-17=51"
    assert scorer.step_end_chars(text) == [9, 17]
    assert scorer.step_end_chars("\n23+45=68\n\n68-17=51\n") == [10, 20]  # empty steps are skipped, as in steps_of
    assert len(scorer.step_end_chars("a\n\nb")) == len(scorer.steps_of("a\n\nb")) == 2
    assert step_end_tokens(_Pieces(), [1, 2, 3, 4, 5, 0], [9, 17]) == [2, 4]  # positions of the newline and of "51"
    # a step end inside a token ("\n6" holds the first step's separator and the next step's first character)
    assert step_end_tokens(_Pieces(), [1, 2, 6, 7], [9]) == [2]
    assert step_end_tokens(_Pieces(), [1, 2], [100]) == [1]  # past the text: the last token
