"""Recipe stage names of the tokenizer package, as lazy "module:Class" strings."""

STAGES: dict[str, str] = {"tokenize": "gristmill.tokenizer.tokenize_stage:Tokenize"}
