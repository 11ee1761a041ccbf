"""What the Trainer starts from: the warm-start model resolver."""
