"""``python -m lit_align.commands``: the same as the ``lit-align`` console script."""

from lit_align.commands import main

main()
