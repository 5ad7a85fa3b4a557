"""What a peer does with the tangle: choose a reference and tips, train, decide whether to publish."""
