"""Monte-Carlo step labels: continuations start from each step, and labels are their share of right answers."""

from lit_align.commands import step_labels
from lit_align.commands.step_labels import monte_carlo_rows, step_label
from lit_align.roles.models import ModelSpec, load_policy
from lit_align.roles.tokenizer import load_tokenizer
from lit_align.rollout.sampling import SamplingConfig
from lit_align.rollout.texts import Completion, complete
from lit_align.tasks.chains import step_labels as exact_labels

PROMPT = [{"role": "user", "content": "Compute 23 + 45 - 17 + 10 step by step."}]  # = 61


def test_step_label_by_hand():
    assert step_label([True, False, False, True], "soft") == 0.5
    assert step_label([False, False, True, False], "hard") == 1 and step_label([False] * 4, "hard") == 0


def test_labels_are_the_share_of_continuations_from_each_step_that_reach_the_answer(monkeypatch):
    asked = []

    def scripted(model, tokenizer, prompts, sampling, *, num_samples, batch_size, seed, prefixes):
        asked.extend(prefixes)
        # From "23+45=68\n": 3 of 4 continuations reach 61; from "23+45=68\n68-17=51\n": 4 of 4; from the wrong
        # "23+45=69\n": none (they go on from the wrong value).
        tails = {"23+45=68\n": ["68-17=51\n51+10=61", "68-17=51\n51+10=61", "68-17=51\n51+10=61", "68-17=52\n52+10=62"],
                 "23+45=68\n68-17=51\n": ["51+10=61"] * 4,
                 "23+45=69\n": ["69-17=52\n52+10=62"] * 4, "23+45=69\n69-17=52\n": ["52+10=62"] * 4}  # fmt: skip
        return [[Completion(t, [], False) for t in tails[p]] for p in prefixes]

    monkeypatch.setattr(step_labels, "complete", scripted)
    samples = [
        Completion("23+45=68\n68-17=51\n51+10=61", [], False),
        Completion("23+45=69\n69-17=52\n52+10=62", [], False),
        Completion("23+45=68\n68-17=51\n51+10=61", [], False),
    ]  # fmt: skip (the repeat is labelled once)
    rows, counts = monte_carlo_rows(None, None, [PROMPT], ["61"], [samples], rollouts=4, separator="\n", how="soft",
                                    sampling=SamplingConfig(), batch_size=8, seed=0, match="final",
                                    checker=exact_labels)  # fmt: skip
    assert asked == ["23+45=68\n", "23+45=68\n68-17=51\n", "23+45=69\n", "23+45=69\n69-17=52\n"]
    assert [r["labels"] for r in rows] == [[0.75, 1.0, 1.0], [0.0, 0.0, 0.0]]  # the last step: the answer itself
    assert rows[0]["completions"] == ["23+45=68", "68-17=51", "51+10=61"]
    assert counts["checked"] == 6 and counts["agree_any"] == 6 and counts["agree_half"] == 6


def test_a_prefix_is_continued_as_greedy_decoding_would():
    tokenizer = load_tokenizer("lit-align/tiny-sft")
    model = load_policy(ModelSpec(name_or_path="lit-align/tiny-sft")).eval()
    greedy = SamplingConfig(temperature=0.0, max_new_tokens=6)
    prompts = [[{"role": "user", "content": "What is 23 + 45?"}], [{"role": "user", "content": "Compute 71 - 18."}]]
    whole = [row[0].text for row in complete(model, tokenizer, prompts, greedy)]
    heads = [text[:1] for text in whole]
    rest = [row[0].text for row in complete(model, tokenizer, prompts, greedy, prefixes=heads)]
    assert all(rest) and whole == [h + r for h, r in zip(heads, rest, strict=True)]
