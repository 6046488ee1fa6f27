"""actionrec: video action recognition (TSN as mmaction2 trains it) with Lightning and Hydra."""

import logging
import warnings

# Lightning's noise that a user cannot act on, silenced by its exact text and nothing more: its
# use of an API that newer torch deprecates, and its product tips ("💡 Tip: try installing ...").
warnings.filterwarnings(
    "ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated", category=FutureWarning
)
logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
    lambda record: not str(record.msg).startswith("💡 Tip")
)
