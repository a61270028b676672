"""Runs a script's test_* functions in name order, each on its own: a failure is printed with
its traceback and the rest still run; the exit status says whether all passed."""

import sys
import time
import traceback


def run(scope, title):
    tests = [(n, f) for n, f in sorted(scope.items()) if n.startswith("test_")]
    failed = []
    for name, test in tests:
        started = time.monotonic()
        try:
            test()
        except Exception:
            failed.append(name)
            print(f"FAIL {name}", file=sys.stderr)
            traceback.print_exc()
        else:
            print(f"ok   {name} ({time.monotonic() - started:.2f}s)")
    print(f"{title}: {len(tests) - len(failed)} passed, {len(failed)} failed")
    return not failed
