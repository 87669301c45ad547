"""`make bench`: khipu measured against baselines taken in the same run."""
