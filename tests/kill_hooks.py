"""zoo-train with a kill injected into its checkpoint saves, for kill-and-resume tests.

    python tests/kill_hooks.py HOOK [zoo-train flags ...]

The production checkpoint code has no test hook; this launcher wraps two of its methods
before running the tool's `main` (tests/test_resume.py, tests/test_model_dir_gcs.py):

    kill:N        SIGKILL inside the save of checkpoint N, after TensorFlow wrote its files and
                  before the manifest (the commit record)
    sleep:N:S     print "zoo-test: in checkpoint write of step N" there and sleep S seconds
                  (so that the test SIGKILLs the process from outside)
    killafter:N   SIGKILL right after checkpoint N is committed
"""

import os
import signal
import sys
import time


def install(spec: str) -> None:
    from zoo.train import checkpoint as ckpt_lib
    kind, step, *rest = spec.split(":")
    step = int(step)
    commit = ckpt_lib.CheckpointManager._commit
    save = ckpt_lib.CheckpointManager.save

    def _commit(self, s, path):
        if s == step and kind == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if s == step and kind == "sleep":
            print(f"zoo-test: in checkpoint write of step {s}", flush=True)
            time.sleep(float(rest[0]) if rest else 60.0)
        return commit(self, s, path)

    def _save(self, s):
        out = save(self, s)
        if s == step and kind == "killafter":
            os.kill(os.getpid(), signal.SIGKILL)
        return out

    ckpt_lib.CheckpointManager._commit = _commit
    ckpt_lib.CheckpointManager.save = _save


def main() -> None:
    install(sys.argv[1])
    sys.argv = ["zoo-train"] + sys.argv[2:]
    from zoo.tools import train
    train.run()


if __name__ == "__main__":
    main()
