"""Recipe stage names of the pipeline package itself (dedup stages), as lazy "module:Class" strings."""

STAGES: dict[str, str] = {}
