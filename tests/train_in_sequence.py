"""Run tools/train.py's ``main`` for several command lines in one process (tests only).

    python tests/train_in_sequence.py RUNS.json

RUNS.json holds a list of argument lists, each as tools/train.py takes them. The smoke test of
every demo config uses it so that the ~10 s import of mmdet, mmseg and mmpretrain is paid once
per task folder rather than once per config; each run still builds its own Runner from the
config (its own experiment name, logger and message hub). Each run's output sits between
``@@ run <i> begin`` and ``@@ run <i> ok`` / ``@@ run <i> failed`` lines; a failure (an
exception or SystemExit; Ctrl-C still stops everything) prints its traceback, the next run
still goes, and the exit status is 1 if any run failed.
"""
import json
import os.path as osp
import runpy
import sys
import traceback

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def main():
    with open(sys.argv[1]) as f:
        runs = json.load(f)
    train = runpy.run_path(osp.join(REPO, 'tools', 'train.py'), run_name='mmkd_train_tool')
    failed = 0
    for i, argv in enumerate(runs):
        print(f'@@ run {i} begin', flush=True)
        sys.argv = ['tools/train.py', *argv]
        try:
            train['main']()
        except (Exception, SystemExit):  # argparse and the tools exit with SystemExit
            traceback.print_exc(file=sys.stdout)
            print(f'@@ run {i} failed', flush=True)
            failed += 1
        else:
            print(f'@@ run {i} ok', flush=True)
    sys.exit(1 if failed else 0)


if __name__ == '__main__':
    main()
