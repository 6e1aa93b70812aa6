"""Model roles: loading (policy, reward, value; LoRA/QLoRA), tokenizers, and the reference component.

Import the submodules directly; this package imports nothing, so loading a tokenizer does not pull in peft.
"""
