"""Quality filters: heuristic rules, fastText language ID and quality classifiers, datatrove adapter."""
