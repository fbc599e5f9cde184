"""A run folder's `plan.json`: which inputs and stages made it, so a rerun resumes only the same plan."""

import hashlib
import json
from pathlib import Path

from gristmill.pipeline.errors import UserError
from gristmill.pipeline.shard_task import StageSpec
from gristmill.pipeline.stats import write_json_atomic


def check_plan(out: Path, files: list[str], specs: list[StageSpec]) -> None:
    """Records the plan of a new run; refuses to resume into a folder made from other inputs or stages."""
    plan = {"inputs": files, "stages": [spec.key() for spec in specs]}
    digest = hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()
    plan_path = out / "plan.json"
    if plan_path.is_file():
        recorded = json.loads(plan_path.read_text(encoding="utf-8"))
        if recorded.get("digest") != digest:
            raise UserError(
                f"{out} holds a run of a different recipe or input list; "
                "choose another output.path or delete the folder to start over"
            )
        return
    write_json_atomic(plan_path, {"digest": digest, **plan})


def planned_stages(out: Path) -> list[str]:
    """`read` and the stage folder names in pipeline order, as recorded in plan.json (each stage key is a
    JSON `[name, type, options]`); just `read` when there is no plan."""
    plan_path = out / "plan.json"
    if not plan_path.is_file():
        return ["read"]
    plan = json.loads(plan_path.read_text(encoding="utf-8"))
    return ["read", *(json.loads(key)[0] for key in plan.get("stages", []))]
