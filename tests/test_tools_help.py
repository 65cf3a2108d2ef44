"""Every script under tools/ answers ``--help``: exit status 0, a usage line, no traceback; and
``tools/demo.py --work-dir`` writes everything under the folder it is given.

The scripts are found by globbing (every ``*.py`` and ``*.sh`` below tools/, at any depth; names
starting with ``_`` are helpers, not tools), so a new tool is covered the day it is added. The
Python tools run with this interpreter (the venv's). They run a few at a time: a tool that
imports torch before parsing its arguments costs seconds of start-up, most of it waiting on
disk and the interpreter, so overlapping them keeps the test short on two cores. Most tools
parse their arguments before their heavy imports (tools/train.py, tools/test.py and
extract_student.py import torch, MMEngine's Runner and mmkd only after parsing), so that most
answers take a fraction of a second.
"""
import glob
import os
import os.path as osp
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOLS = osp.join(REPO, 'tools')
USAGE = re.compile(r'^usage:', re.IGNORECASE | re.MULTILINE)
#: Shell scripts and the positional arguments they need (fewer: usage on stderr, status 2).
NEEDED_ARGS = {'dist_train.sh': 2, 'dist_test.sh': 3, 'slurm_train.sh': 4, 'slurm_test.sh': 4,
               'slurm_launch.sh': 3}


def tool_scripts():
    """Every tool script under tools/, as paths relative to the repository root."""
    found = []
    for ext in ('py', 'sh'):
        found += glob.glob(osp.join(TOOLS, '**', f'*.{ext}'), recursive=True)
    return sorted(osp.relpath(p, REPO) for p in found if not osp.basename(p).startswith('_'))


def command(script, *args):
    runner = [sys.executable] if script.endswith('.py') else ['bash']
    return [*runner, script, *args]


#: For the shell scripts: an interpreter that fails at once and a venv path that does not
#: exist, so that a script that ignored --help would stop at its first step instead of
#: launching torchrun or installing a virtual environment (tools/install.sh did, before).
SAFE_SHELL_ENV = dict(PYTHON='false', MMKD_VENV=osp.join(REPO, 'work_dirs', 'no-such-venv'))


def run(cmd):
    env = dict(os.environ, PYTHONWARNINGS='ignore')
    if cmd[0] == 'bash':
        env.update(SAFE_SHELL_ENV)
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_every_tool_answers_help():
    scripts = tool_scripts()
    # The ones this issue is about, and the ones every user meets first.
    for expected in ('tools/train.py', 'tools/test.py', 'tools/demo.py', 'tools/install.sh',
                     *(f'tools/{name}' for name in NEEDED_ARGS)):
        assert expected in scripts, f'{expected} not found by the glob: {scripts}'
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = dict(zip(scripts, pool.map(lambda s: run(command(s, '--help')), scripts)))
    problems = []
    for script, proc in results.items():
        why = []
        if proc.returncode != 0:
            why.append(f'exit status {proc.returncode}')
        if not USAGE.search(proc.stdout):
            why.append('no line starting with "usage:" on stdout')
        if 'Traceback' in proc.stderr:
            why.append('a traceback on stderr')
        if why:
            problems.append(f'{" ".join(command(script, "--help"))}: {", ".join(why)}\n'
                            f'--- stdout:\n{proc.stdout[-800:]}--- stderr:\n{proc.stderr[-800:]}')
    assert not problems, '\n\n'.join(problems)


def test_shell_tools_refuse_missing_arguments_with_usage():
    """Too few arguments: the usage on stderr and status 2, before torchrun or srun start (a
    torchrun traceback, or ``srun --partition=`` with an empty partition, before)."""
    for name, needed in NEEDED_ARGS.items():
        args = ['train', 'cpu'][:needed - 1] if name == 'slurm_launch.sh' else ['x'] * (needed - 1)
        proc = run(command(f'tools/{name}', *args))
        assert proc.returncode == 2, (name, proc.returncode, proc.stderr[-500:])
        assert USAGE.search(proc.stderr) and not proc.stdout, (name, proc.stdout, proc.stderr)
    proc = run(command('tools/slurm_launch.sh', 'fit', 'cpu', 'job'))  # neither train nor test
    assert proc.returncode == 2 and USAGE.search(proc.stderr)
    # install.sh takes no arguments: a mistyped option is refused, nothing is installed.
    proc = run(command('tools/install.sh', '--hlep'))
    assert proc.returncode == 2 and USAGE.search(proc.stderr) and '[install]' not in proc.stdout


# ------------------------------------------------------------------ tools/demo.py --work-dir

def test_demo_work_dir_holds_everything_it_writes(tmp_path, monkeypatch, capsys):
    """``tools/demo.py --work-dir DIR`` (relative to the current directory) trains the teachers,
    the runs and writes the results under DIR, outside the clone; nothing goes to the default
    work_dirs/demo. Runs are faked (a one-tensor checkpoint each): this is about paths."""
    import importlib.util

    import torch
    spec = importlib.util.spec_from_file_location('demo_work_dir', osp.join(TOOLS, 'demo.py'))
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    runs = []

    def fake_train(config, work_dir, metric, options=(), scale=1.0, threads=None):
        run = osp.join(REPO, work_dir)  # what the real train() writes to
        runs.append(run)
        os.makedirs(run, exist_ok=True)
        torch.save(dict(state_dict=dict(w=torch.zeros(1))), osp.join(run, 'epoch_1.pth'))
        with open(osp.join(run, 'last_checkpoint'), 'w') as f:
            f.write(osp.join(run, 'epoch_1.pth'))
        return 90.0 if 'teacher' in work_dir else 80.0

    monkeypatch.setattr(demo, 'train', fake_train)
    default = osp.join(REPO, 'work_dirs', 'demo')
    before = os.listdir(default) if osp.isdir(default) else None
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, 'argv', ['demo.py', '--tasks', 'classification', '--methods', 'kd',
                                      '--work-dir', 'out'])
    demo.main()
    out = tmp_path / 'out'
    assert runs and all(r.startswith(str(out) + os.sep) for r in runs), runs
    assert (out / 'digits' / 'teacher.pth').is_file() and (out / 'results.md').is_file()
    assert '| classification | test | top-1 (%) | kd | 90.00 |' in (out / 'results.md').read_text()
    printed = capsys.readouterr().out
    assert f'logs and checkpoints under {out}/' in printed
    assert (os.listdir(default) if osp.isdir(default) else None) == before
