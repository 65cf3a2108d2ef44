"""tools/demo.py runs each training as a fork of one server that imported torch, MMEngine and
mmkd once (``start_run_server``): a forked run must log what a new interpreter logs.

One driver process trains the same one-epoch digits student twice through ``demo.train``:
first in a new interpreter (no server yet), then forked from the server. Both metrics and the
final weights must be equal, and only the forked run reports its CPU seconds (the sign that it
did run in a fork, not silently in a new interpreter).
"""
import os.path as osp
import subprocess
import sys
import textwrap

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

DRIVER = textwrap.dedent('''
    import json, os.path as osp, sys
    sys.path.insert(0, osp.join(sys.argv[1], 'tools'))
    import demo
    import torch
    config = 'configs/demo/digits/resnet18-tiny_digits.py'
    options = ['train_cfg.max_epochs=1', 'train_cfg.val_interval=1',
               'default_hooks.checkpoint.interval=1', 'randomness.seed=0']
    out = {}
    for name in ('interpreter', 'fork'):
        if name == 'fork':
            demo.start_run_server(1)
        work = osp.join(sys.argv[2], name)
        score = demo.train(config, work, 'accuracy/top1', options, threads=1)
        state = torch.load(osp.join(work, 'epoch_1.pth'), map_location='cpu',
                           weights_only=False)['state_dict']
        out[name] = dict(score=score, cpu=demo.cpu_seconds.get(work),
                         weights=sum(float(v.double().abs().sum()) for v in state.values()))
    print(json.dumps(out))
''')


def test_a_forked_run_logs_what_a_new_interpreter_logs(tmp_path):
    proc = subprocess.run([sys.executable, '-c', DRIVER, REPO, str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out['interpreter']['cpu'] is None, out  # a new interpreter: no CPU line
    assert out['fork']['cpu'] is not None and out['fork']['cpu'] > 0, out
    assert out['fork']['score'] == out['interpreter']['score'], out
    assert out['fork']['weights'] == out['interpreter']['weights'], out
