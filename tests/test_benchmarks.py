"""The benchmark scripts run on a tiny setting and write what they promise."""
import json
import re

from conftest import DIGITS, run_tool


def test_overhead_benchmark_prints_ratios(tmp_path):
    out = tmp_path / 'overhead.json'
    proc = run_tool(['tools/benchmark/overhead.py', DIGITS['distill'], '--steps', '2',
                     '--warmup', '1', '--batch-size', '8', '--random-teacher', '--out', str(out)])
    assert re.search(r'time ratio\s+distill / \(student \+ teacher\) = \d+\.\d+', proc.stdout)
    assert re.search(r'memory ratio distill / \(student \+ teacher\) = \d+\.\d+', proc.stdout)
    result = json.loads(out.read_text())
    for phase in ('student', 'teacher', 'distill'):
        assert result[f'{phase}_median_s'] > 0 and result[f'{phase}_mem_mib'] > 0
    # The distillation step holds both models' weights: more memory than the student alone.
    assert result['distill_mem_mib'] > result['student_mem_mib']
    assert result['batch_size'] == 8


def test_quality_grid_tiny(tmp_path):
    out = tmp_path / 'out'
    proc = run_tool(['tools/benchmark/quality.py', '--tasks', 'classification', '--methods',
                     'kd', '--seeds', '0', '--work-dir', str(tmp_path / 'runs'),
                     '--teacher-work-dir', str(tmp_path / 'teachers'), '--out', str(out),
                     '--cfg-options', 'train_cfg.max_epochs=1'])
    table = (out / 'quality.md').read_text()
    assert '| classification | top-1 (%) | kd |' in table
    assert (out / 'quality.png').stat().st_size > 1000
    rows = json.loads((out / 'quality.json').read_text())['rows']
    assert rows[0]['method'] == 'kd' and len(rows[0]['distilled']) == 1
    assert (tmp_path / 'teachers' / 'digits' / 'teacher.pth').exists()
    assert 'gap closed' in proc.stdout
