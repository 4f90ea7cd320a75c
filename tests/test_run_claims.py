"""Run claims (benchmarks/run_claims.py): one process at a time holds a run, and a dead process's
claim is free again."""

import importlib.util
import os
import subprocess
import sys
import time

_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "run_claims.py")
_spec = importlib.util.spec_from_file_location("peterrec_benchmark_run_claims", _PATH)
run_claims = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run_claims)

# A second process that claims a key, says so, then sleeps until it is killed.
_HOLDER = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("claims", sys.argv[1])
module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)
claims = module.RunClaims(sys.argv[2])
print("claimed" if claims.claim(sys.argv[3]) else "refused", flush=True)
time.sleep(60)
"""


def _start_holder(folder, key):
    process = subprocess.Popen([sys.executable, "-c", _HOLDER, _PATH, str(folder), key], stdout=subprocess.PIPE,
                               text=True)
    return process, process.stdout.readline().strip()


def test_a_claim_is_held_until_released(tmp_path):
    claims = run_claims.RunClaims(str(tmp_path))
    assert claims.claim("age-fine-all-0")
    assert claims.claim("age-fine-all-0")  # idempotent in the holding process
    holder, answer = _start_holder(tmp_path, "age-fine-all-0")
    try:
        assert answer == "refused"
    finally:
        holder.kill()
        holder.wait()
    claims.release("age-fine-all-0")
    holder, answer = _start_holder(tmp_path, "age-fine-all-0")
    try:
        assert answer == "claimed"
        assert not claims.claim("age-fine-all-0")
        assert claims.claim("age-fine-all-1")  # other keys are independent
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_process_leaves_no_claim_behind(tmp_path):
    claims = run_claims.RunClaims(str(tmp_path))
    holder, answer = _start_holder(tmp_path, "gender/peterrec-serial/seed 3")
    assert answer == "claimed"
    assert not claims.claim("gender/peterrec-serial/seed 3")
    holder.kill()
    holder.wait()
    deadline = time.monotonic() + 10
    while not claims.claim("gender/peterrec-serial/seed 3"):
        assert time.monotonic() < deadline, "the dead process's claim was never released"
        time.sleep(0.05)
    claims.release("gender/peterrec-serial/seed 3")
    claims.release("never-claimed")  # releasing what is not held is a no-op
