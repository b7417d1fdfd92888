"""What produced a results folder, so a resumed run never mixes in, or reports, another run's episodes.

Each policy folder holds ``run.json``: the settings its episodes depend on (``identity``: backend,
episodes, steps, camera, seed, loop; for S2 also the model, the hash of its config.json and the params
files with their hashes), the commit and the dates. A run resumes into a folder only when the
identity matches; otherwise StaleResults says what differs.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import pathlib
import subprocess

RUN_FILE = "run.json"
PACKAGE_DIR = pathlib.Path(__file__).resolve().parents[1]


class StaleResults(ValueError):
    """The results folder holds episodes of a run with other settings."""


def file_sha256(path) -> str | None:
    try:
        return hashlib.sha256(pathlib.Path(path).expanduser().read_bytes()).hexdigest()
    except OSError:
        return None


def model_config_sha256(model: str) -> str | None:
    """sha256 of the checkpoint's config.json (None for tiny:<arch>, which names its checkpoint)."""
    if model.startswith("tiny:"):
        return None
    return file_sha256(pathlib.Path(model).expanduser() / "config.json")


def identity(cfg, policy: str) -> dict:
    """The settings ``policy``'s episodes depend on."""
    ident = {"policy": policy, "backend": cfg.backend, "episodes": str(cfg.episodes or "bundled"),
             "scenes_dir": cfg.scenes_dir, "max_steps": cfg.max_steps, "size": f"{cfg.width}x{cfg.height}",
             "seed": cfg.seed, "upstream_loop": cfg.upstream_loop}
    if cfg.agent != "r2r":  # only when not the default, so runs recorded before stay resumable
        ident["agent"] = cfg.agent
    if policy == "oracle" and cfg.oracle_perturb:  # likewise
        ident["oracle_perturb"] = cfg.oracle_perturb
    if policy == "dagger":
        ident["dagger_budget"] = cfg.dagger_budget
        if cfg.dagger_stop_within:  # only when on, so runs recorded before stay resumable
            ident["dagger_stop_within"] = cfg.dagger_stop_within
    if policy in ("s2", "dagger"):
        if cfg.s2_mode == "engine":  # only then, so runs recorded before stay resumable
            ident["s2_mode"] = "engine"
        if cfg.s2_mode == "external":
            ident["model"] = "external S2 node"
        else:
            from ..ros.share import sim_params_files

            ident["model"] = cfg.model
            ident["model_config_sha256"] = model_config_sha256(cfg.model)
            ident["params"] = [{"file": str(f), "sha256": file_sha256(f)} for f in sim_params_files(cfg.params_file)]
    return ident


def git_commit() -> str:
    try:
        done = subprocess.run(["git", "-C", str(PACKAGE_DIR), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def has_results(policy_dir: pathlib.Path) -> bool:
    return any(f.stat().st_size > 0 for f in policy_dir.glob("episodes.rank*.jsonl"))


def read_run(policy_dir: pathlib.Path) -> dict | None:
    try:
        return json.loads((policy_dir / RUN_FILE).read_text())
    except (OSError, ValueError):
        return None


def check(policy_dir: pathlib.Path, ident: dict) -> dict | None:
    """The stored run.json when the folder may be resumed with ``ident``; StaleResults otherwise."""
    stored = read_run(policy_dir)
    if not has_results(policy_dir):
        return stored
    if stored is None:
        raise StaleResults(f"{policy_dir} holds {ident['policy']} results without {RUN_FILE}, so what produced them is "
                           f"unknown; use a new --out folder, or delete {policy_dir} to start over")
    old = stored.get("identity", {})
    for key in sorted(set(old) | set(ident)):
        if old.get(key) != ident.get(key):
            raise StaleResults(f"{policy_dir} holds {ident['policy']} results of another run ({key} was {old.get(key)!r}, "
                               f"now {ident.get(key)!r}); use a new --out folder, or delete {policy_dir} to start over")
    return stored


def claim(policy_dir: pathlib.Path, ident: dict) -> dict:
    """Check (see :func:`check`), then write run.json: identity, commit, created and updated (UTC)."""
    stored = check(policy_dir, ident)
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    run = {"identity": ident, "commit": git_commit(), "created": (stored or {}).get("created", now), "updated": now}
    if stored is not None and stored.get("identity") != ident:  # only reached without results: a fresh start
        run["created"] = now
    policy_dir.mkdir(parents=True, exist_ok=True)
    tmp = policy_dir / f".{RUN_FILE}.{os.getpid()}"
    tmp.write_text(json.dumps(run, indent=2) + "\n")
    os.replace(tmp, policy_dir / RUN_FILE)
    return run


def random_weights_note(run: dict | None) -> str:
    """'tiny:<arch>, random weights' when the S2 run used a tiny checkpoint, else ''."""
    model = str(((run or {}).get("identity") or {}).get("model", ""))
    return f"{model}, random weights" if model.startswith("tiny:") else ""
