"""Networks: 2D backbones, the TSN head and consensus, and the recognizer that joins them."""
