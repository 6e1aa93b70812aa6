"""What a step-SFT model already knows about its own steps, before any process reward training.

On ``lit-align/chains`` step-wise rows (half with an error injected at a random step, labelled wrong from there on),
reads two things at every step end and fits a logistic regression on train rows, scored on validation rows:

- the hidden state at the step's separator, layer by layer (a linear probe: can a head on the unchanged model read
  "right so far" where a PRM reads it?);
- the model's own surprise: the lowest probability it gives a token of the step (separator excluded), and the
  running minimum over the steps so far (a step is wrong from the first error on).

    python benchmarks/prm_probe.py --model runs/chains_sft/hf_model

Printed: held-out accuracy and AUC (right steps ranked above wrong ones) of each probe, and the share of right
steps (what a constant guess scores).
"""

from __future__ import annotations

import argparse

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lit_align.data.stepwise import prompt_ids, tokenize_steps
from lit_align.tasks.chains import make_rows


def features(model, tokenizer, split: str, num_rows: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hidden states at step ends (S, L + 1, H), step labels (S,) and [step surprise, running min] (S, 2)."""
    hidden, labels, surprise = [], [], []
    for row in make_rows("stepwise", split, num_rows, seed=1):
        ids, ends = tokenize_steps(tokenizer, row["prompt"], row["completions"], "\n")
        x = torch.tensor([ids])
        with torch.no_grad():
            out = model(x, output_hidden_states=True)
        logps = torch.log_softmax(out.logits[0, :-1].float(), -1).gather(-1, x[0, 1:, None])[:, 0]  # of token t + 1
        start, running = len(prompt_ids(tokenizer, row["prompt"])), 0.0
        for end, label in zip(ends, row["labels"], strict=True):
            step = logps[start - 1 : end - 1].min().item()  # tokens start .. end - 1: the step, not its separator
            running = min(running, step)
            hidden.append(torch.stack([h[0, end] for h in out.hidden_states]))
            labels.append(float(label))
            surprise.append([step, running])
            start = end + 1
    return torch.stack(hidden), torch.tensor(labels), torch.tensor(surprise)


def probe(train: torch.Tensor, y_train: torch.Tensor, test: torch.Tensor, y_test: torch.Tensor) -> tuple[float, float]:
    """Held-out accuracy and AUC of an L2-regularised logistic regression on standardised features."""
    mean, std = train.mean(0), train.std(0) + 1e-6
    train, test = (train - mean) / std, (test - mean) / std
    w = torch.zeros(train.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(train @ w + b, y_train) + 1e-3 * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        logits = test @ w + b
        accuracy = ((logits > 0).float() == y_test).float().mean().item()
        right, wrong = logits[y_test == 1], logits[y_test == 0]
        pairs = right[:, None] - wrong[None, :]
        auc = ((pairs > 0).float() + 0.5 * (pairs == 0).float()).mean().item()  # ties count half
    return accuracy, auc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="runs/chains_sft/hf_model")
    parser.add_argument("--train-rows", type=int, default=1000)
    parser.add_argument("--val-rows", type=int, default=500)
    args = parser.parse_args()
    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForCausalLM.from_pretrained(args.model).eval()
    hidden, y, surprise = features(model, tokenizer, "train", args.train_rows)
    hidden_val, y_val, surprise_val = features(model, tokenizer, "validation", args.val_rows)
    print(f"{len(y_val)} held-out steps, share right {y_val.mean():.3f}")
    rows = [(f"hidden state at the separator, layer {layer}", hidden[:, layer], hidden_val[:, layer])
            for layer in range(hidden.shape[1])]  # fmt: skip
    rows += [("surprise of the step", surprise[:, :1], surprise_val[:, :1]),
             ("running minimum of the surprise", surprise[:, 1:], surprise_val[:, 1:])]  # fmt: skip
    for name, train, val in rows:
        accuracy, auc = probe(train, y, val, y_val)
        print(f"{name}: accuracy {accuracy:.3f}, AUC {auc:.3f}")


if __name__ == "__main__":
    main()
