"""actionrec: video action recognition (TSN as mmaction2 trains it) with Lightning and Hydra."""
