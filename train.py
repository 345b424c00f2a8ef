"""``python train.py [stage=...] [group=option ...]`` from the repository root: pirtune-train."""

from pirtune.train import main

if __name__ == "__main__":
    main()
