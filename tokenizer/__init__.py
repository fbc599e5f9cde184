"""BPE training and tokenization of documents into memory-mappable Arrow token shards."""
