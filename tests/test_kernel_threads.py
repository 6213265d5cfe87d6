"""`import labs` asks OpenMP for threads that sleep while they wait (OMP_WAIT_POLICY=PASSIVE), before torch loads.

Why: with libgomp's default (threads spin while they wait), a Jupyter kernel's torch work ran 30-150x slower with one
of two cores busy (the capstone's one-process reference: 28 s for 5 steps instead of 0.9 s; notebook 12's training
cell 80-110 s, past nbval's 120 s cell limit in a busy clean-clone run). libgomp reads the variable once, when torch
loads it, so the line must run before anything imports torch: `import labs` loads torch lazily."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _after_import(env_value):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if env_value is not None:
        env["OMP_WAIT_POLICY"] = env_value
    code = "import os, sys, labs; print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_import_labs_sets_passive_waiting_before_torch_loads():
    assert _after_import(None) == ["PASSIVE", "False"]


def test_a_policy_the_user_set_wins():
    assert _after_import("ACTIVE") == ["ACTIVE", "False"]
