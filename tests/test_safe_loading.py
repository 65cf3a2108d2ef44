"""Every way a checkpoint enters the process is loaded weights-only, and refusals say why.

The evil checkpoint pickles a call of ``print('PWNED')``: unpickled in full, it prints. It is
served by a local HTTP server and fed through every scheme MMEngine's CheckpointLoader knows,
and through the command-line tools as a user runs them.
"""
import codecs
import concurrent.futures
import http.server
import importlib
import io
import os
import pickle
import runpy
import socket
import sys
import threading
import types

import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner import checkpoint as mmengine_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader, _load_checkpoint

import mmkd  # noqa: F401  (makes checkpoint loading safe)
from mmkd.utils import UnsafeCheckpointError
from mmkd.utils.checkpoint import _describe_refusal

from conftest import DIGITS, REPO, run_tool


class PrintCall:
    def __reduce__(self):
        return (print, ('PWNED',))


def checkpoint_bytes(obj, **save_args) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf, **save_args)
    return buf.getvalue()


def evil_bytes(payload=None, **save_args) -> bytes:
    return checkpoint_bytes(dict(state_dict={'w': torch.ones(2)},
                                 payload=PrintCall() if payload is None else payload), **save_args)


EVIL = evil_bytes()
GOOD = checkpoint_bytes(dict(state_dict={'w': torch.ones(2)}, meta=dict(epoch=1),
                             hub=HistoryBuffer([1.0, 2.0], [1, 1])))  # MMEngine's, allow-listed


class _Handler(http.server.BaseHTTPRequestHandler):
    timeout = 10  # seconds a client may stall a request before the server drops it

    def do_GET(self):
        body = self.server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope='module')
def server():
    """A local HTTP server for checkpoints: ``server.url``, and ``server.files`` (path: bytes)."""
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _Handler)
    httpd.daemon_threads = True
    httpd.files = {'/evil.pth': EVIL, '/good.pth': GOOD}
    httpd.url = f'http://127.0.0.1:{httpd.server_port}'
    thread = threading.Thread(target=httpd.serve_forever, kwargs=dict(poll_interval=0.05),
                              daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture(autouse=True)
def isolated_downloads(tmp_path, monkeypatch):
    """A fresh download cache per test, and no request that can hang (torch.hub sets none)."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    monkeypatch.setenv('MMENGINE_HOME', str(tmp_path / 'mmengine_home'))
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(10)
    yield
    socket.setdefaulttimeout(old_timeout)


def assert_refused(error, source, named):
    text = str(error)
    assert source in text and named in text, text
    for advice in ('[getattr', '[print', '[os.', '[posix', '[eval', '[exec', '[subprocess',
                   '[builtins', '[importlib'):
        assert f'add_safe_globals({advice}' not in text, text
    assert 'an object type' not in text, text


def test_good_checkpoint_loads_over_http_and_evil_one_is_refused(server, capfd):
    ckpt = _load_checkpoint(f'{server.url}/good.pth', map_location='cpu')
    assert torch.equal(ckpt['state_dict']['w'], torch.ones(2)) and ckpt['meta'] == {'epoch': 1}
    assert list(ckpt['hub'].data[0]) == [1.0, 2.0]
    url = f'{server.url}/evil.pth'
    with pytest.raises(UnsafeCheckpointError) as e:
        _load_checkpoint(url, map_location='cpu')
    assert_refused(e.value, url, 'builtins.print')
    assert 'add_safe_globals' not in str(e.value)  # a function: never allow-listed
    assert 'PWNED' not in capfd.readouterr().out


# One way to reach each scheme of CheckpointLoader._schemes: scheme -> f(monkeypatch, server,
# tmp_path) returning the checkpoint to load. Remote stores are faked at their byte source
# only; MMEngine's loader for the scheme runs unchanged.

def _local(monkeypatch, server, tmp_path):
    (tmp_path / 'evil.pth').write_bytes(EVIL)
    return str(tmp_path / 'evil.pth')


def _http(monkeypatch, server, tmp_path):
    return f'{server.url}/evil.pth'


def _https(monkeypatch, server, tmp_path):
    # No TLS here: mmkd's bounded download fetches the same path from the local http server.
    from mmkd.utils import checkpoint as mmkd_checkpoint
    download = mmkd_checkpoint.download_checkpoint
    monkeypatch.setattr(mmkd_checkpoint, 'download_checkpoint', lambda url, dst, *args, **kw:
                        download(url.replace('https://', 'http://', 1), dst, *args, **kw))
    return f'{server.url.replace("http://", "https://")}/evil.pth'


def _url_table(prefix):
    def make(monkeypatch, server, tmp_path):
        table = {'evil': f'{server.url}/evil.pth'}
        for getter in ('get_torchvision_models', 'get_external_models', 'get_mmcls_models'):
            monkeypatch.setattr(mmengine_checkpoint, getter, lambda: dict(table))
        return f'{prefix}evil'
    return make


def _openmmlab_local(monkeypatch, server, tmp_path):
    # open-mmlab:// names may map to a file under MMENGINE_HOME, loaded by torch.load directly.
    os.makedirs(os.environ['MMENGINE_HOME'], exist_ok=True)
    with open(os.path.join(os.environ['MMENGINE_HOME'], 'evil.pth'), 'wb') as f:
        f.write(EVIL)
    monkeypatch.setattr(mmengine_checkpoint, 'get_external_models', lambda: {'evil': 'evil.pth'})
    return 'open-mmlab://evil'


def _object_store(prefix):
    class FakeBackend:  # stands in for petrel_client's
        def get(self, filepath):
            return EVIL

    def make(monkeypatch, server, tmp_path):
        monkeypatch.setattr(mmengine_checkpoint, 'get_file_backend',
                            lambda *args, **kwargs: FakeBackend())
        return f'{prefix}bucket/evil.pth'
    return make


def _pavi(monkeypatch, server, tmp_path):
    class Model:
        name = 'evil.pth'

        def download(self, path):
            with open(path, 'wb') as f:
                f.write(EVIL)

    pavi = types.ModuleType('pavi')
    pavi.modelcloud = types.SimpleNamespace(get=lambda path: Model())
    monkeypatch.setitem(sys.modules, 'pavi', pavi)
    return 'pavi://evil'


SCHEMES = {
    '': _local, 'http://': _http, 'https://': _https, 'pavi://': _pavi,
    r'(\S+\:)?s3://': _object_store('s3://'), r'(\S+\:)?petrel://': _object_store('petrel://'),
    **{prefix: _url_table(prefix) for prefix in
       ('torchvision://', 'modelzoo://', 'open-mmlab://', 'openmmlab://', 'mmcls://')}}


def test_scheme_cases_cover_every_scheme_mmengine_registers():
    # A scheme MMEngine adds later must get a case here (and is guarded meanwhile, see below).
    assert set(SCHEMES) == set(CheckpointLoader._schemes)


@pytest.mark.parametrize('make', [*SCHEMES.values(), _openmmlab_local],
                         ids=[*SCHEMES, 'open-mmlab-local'])
def test_every_scheme_refuses_code_in_a_checkpoint(make, server, monkeypatch, tmp_path, capfd):
    source = make(monkeypatch, server, tmp_path)
    with pytest.raises(UnsafeCheckpointError) as e:
        _load_checkpoint(source, map_location='cpu')
    assert_refused(e.value, source, 'builtins.print')
    assert 'PWNED' not in capfd.readouterr().out


def test_scheme_registered_later_is_guarded_too(monkeypatch, tmp_path, capfd):
    monkeypatch.setattr(CheckpointLoader, '_schemes', dict(CheckpointLoader._schemes))
    (tmp_path / 'evil.pth').write_bytes(EVIL)

    @CheckpointLoader.register_scheme(prefixes='mine://')
    def load_from_mine(filename, map_location=None):  # as careless as MMEngine's http loader
        return torch.load(tmp_path / 'evil.pth', map_location=map_location, weights_only=False)

    with pytest.raises(UnsafeCheckpointError) as e:
        _load_checkpoint('mine://evil', map_location='cpu')
    assert_refused(e.value, 'mine://evil', 'builtins.print')
    assert 'PWNED' not in capfd.readouterr().out


def test_user_opt_out_of_weights_only_does_not_reach_checkpoints(server, monkeypatch, capfd):
    # torch lets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD override only calls that pass no weights_only.
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    monkeypatch.delenv('TORCH_FORCE_WEIGHTS_ONLY_LOAD', raising=False)
    with pytest.raises(UnsafeCheckpointError) as e:
        _load_checkpoint(f'{server.url}/evil.pth', map_location='cpu')
    assert_refused(e.value, f'{server.url}/evil.pth', 'builtins.print')
    assert _load_checkpoint(f'{server.url}/good.pth', map_location='cpu')['meta'] == {'epoch': 1}
    assert 'PWNED' not in capfd.readouterr().out
    # The environment is the user's again.
    assert os.environ.get('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD') == '1'
    assert 'TORCH_FORCE_WEIGHTS_ONLY_LOAD' not in os.environ


# Payloads for each shape of refusal message of torch's weights-only unpickler.

class NotAllowed:  # a plain data class no allow-list knows
    pass


class ModuleRef:
    def __init__(self, name):
        self.name = name

    def __reduce__(self):
        return (importlib.import_module, (self.name,))


class GetattrOsSystem:
    def __reduce__(self):
        return (getattr, (ModuleRef('os'), 'system'))


class GetattrHistoryBufferInit:  # getattr is allowed for HistoryBuffer, but not for this
    def __reduce__(self):
        return (getattr, (HistoryBuffer, '__init__'))


class OsSystem:
    def __reduce__(self):
        return (os.system, ('echo PWNED',))


class BuildOnBytes:  # _codecs.encode is allowed; setting state on its bytes (BUILD) is not
    def __reduce__(self):
        return (codecs.encode, ('x', 'latin1'), {'x': 1})


# A class or function can only reach NEWOBJ or REDUCE without its own GLOBAL through an
# allowed callable returning it: these stand for such a callable, allowed during the test.
def make_class():
    return NotAllowed


def make_print():
    return print


class PrintRef:
    def __call__(self, *args):
        return print(*args)

    def __reduce__(self):
        return (make_print, ())


class IndirectPrintCall:
    def __reduce__(self):
        return (PrintRef(), ('PWNED',))


class ClassByFactoryPickler(pickle.Pickler):
    def reducer_override(self, obj):
        return (make_class, ()) if obj is NotAllowed else NotImplemented


CLASS_BY_FACTORY = types.ModuleType('class_by_factory_pickle')
CLASS_BY_FACTORY.Pickler = ClassByFactoryPickler

HERE = NotAllowed.__module__
MESSAGE_CASES = {  # id: (checkpoint bytes, text the message must contain, add_safe_globals hint)
    'unknown class': (evil_bytes(NotAllowed()), f'{HERE}.NotAllowed', True),
    'print reduce': (EVIL, 'builtins.print', False),
    'getattr(os, system)': (evil_bytes(GetattrOsSystem()), 'importlib.import_module', False),
    'getattr(HistoryBuffer, __init__)': (evil_bytes(GetattrHistoryBufferInit()),
                                         "getattr(HistoryBuffer, '__init__')", False),
    'blocked module': (evil_bytes(OsSystem()), f'{os.system.__module__}.system', False),
    'NEWOBJ of unknown class': (evil_bytes(NotAllowed(), pickle_module=CLASS_BY_FACTORY),
                                f'{HERE}.NotAllowed', True),
    'BUILD of unknown type': (evil_bytes(BuildOnBytes()), 'builtins.bytes', False),
    'REDUCE of unknown function': (evil_bytes(IndirectPrintCall()),
                                   'built-in function print', False),
    'unsupported opcode': (checkpoint_bytes({'a': [1]}, pickle_protocol=0),
                           'pickle opcode DICT', False),
}


@pytest.mark.parametrize('case', MESSAGE_CASES)
def test_refusal_names_the_construct_and_never_advises_allowing_code(case, server, capfd):
    payload, named, hint = MESSAGE_CASES[case]
    path = f'/{case.replace(" ", "_")}.pth'
    server.files[path] = payload
    with torch.serialization.safe_globals([make_class, make_print]):
        with pytest.raises(UnsafeCheckpointError) as e:
            _load_checkpoint(server.url + path, map_location='cpu')
    assert_refused(e.value, server.url + path, named)
    assert ('add_safe_globals' in str(e.value)) == hint, str(e.value)
    if hint:
        assert f'add_safe_globals([{named}])' in str(e.value)
    assert 'PWNED' not in capfd.readouterr().out


@pytest.mark.parametrize('message, words', [
    # Shapes no payload above reaches (torch's wording, as in _weights_only_unpickler.py).
    ("persistent_load id must be tuple or int, but got <class 'str'>", 'persistent id'),
    ("Only persistent_load of storage is allowed, but got <class 'str'>", 'persistent id'),
    ('unsupported persistent id encountered', 'persistent id'),
    ("Can only append to lists, but got <class 'dict'>", 'pickle append'),
    ('Unsupported operand 105', 'pickle opcode INST'),
    ('some future refusal', 'some future refusal'),
])
def test_other_refusal_shapes_are_described(message, words):
    what, cls_name = _describe_refusal(f'Weights only load failed. WeightsUnpickler error: '
                                       f'\n\n{message}\n\nCheck the documentation of torch.load')
    assert words in what and cls_name is None


def test_extract_student_takes_any_scheme_and_loads_it_safely(server, monkeypatch, tmp_path,
                                                            capfd):
    server.files['/distilled.pth'] = checkpoint_bytes(
        dict(state_dict={'student.w': torch.ones(2), 'teacher.w': torch.zeros(2)}, meta={}))
    tool = os.path.join(REPO, 'tools', 'model_converters', 'extract_student.py')
    dst = str(tmp_path / 'student.pth')
    monkeypatch.setattr(sys, 'path', list(sys.path))  # the tool prepends the repo root
    monkeypatch.setattr(sys, 'argv', [tool, f'{server.url}/distilled.pth', dst])
    runpy.run_path(tool, run_name='__main__')  # in-process: a tool start costs seconds
    out = torch.load(dst, weights_only=True)
    assert list(out['state_dict']) == ['w']
    assert out['meta']['mmkd_source_checkpoint'] == f'{server.url}/distilled.pth'
    monkeypatch.setattr(sys, 'argv', [tool, f'{server.url}/evil.pth', dst])
    with pytest.raises(UnsafeCheckpointError) as e:
        runpy.run_path(tool, run_name='__main__')
    assert_refused(e.value, f'{server.url}/evil.pth', 'builtins.print')
    assert 'PWNED' not in capfd.readouterr().out


def test_command_line_tools_refuse_an_evil_checkpoint_url(server, teacher_ckpts, tmp_path):
    """As a user runs them: a teacher checkpoint, load_from, --resume and tools/test.py."""
    for name in ('evil_teacher', 'evil_load_from', 'evil_resume', 'evil_test'):
        server.files[f'/{name}.pth'] = EVIL
    with open(teacher_ckpts['digits'], 'rb') as f:
        server.files['/teacher.pth'] = f.read()
    url = server.url
    runs = {
        'evil_teacher': ['tools/train.py', DIGITS['distill'], '--cfg-options',
                         f'model.teacher.checkpoint={url}/evil_teacher.pth'],
        # The teacher loads over http; then load_from is refused.
        'evil_load_from': ['tools/train.py', DIGITS['distill'], '--cfg-options',
                           f'model.teacher.checkpoint={url}/teacher.pth',
                           f'load_from={url}/evil_load_from.pth'],
        'evil_resume': ['tools/train.py', DIGITS['student'], '--resume',
                        f'{url}/evil_resume.pth'],
        'evil_test': ['tools/test.py', DIGITS['student'], f'{url}/evil_test.pth'],
    }

    def run(name):
        args = [*runs[name], '--work-dir', str(tmp_path / name)]
        env = dict(TORCH_HOME=str(tmp_path / name / 'torch_home'))
        return run_tool(args, check=False, timeout=300, env=env)

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        procs = dict(zip(runs, pool.map(run, runs)))
    for name, proc in procs.items():
        out = proc.stdout
        assert proc.returncode != 0 and 'PWNED' not in out, f'{name}:\n{out[-3000:]}'
        assert 'UnsafeCheckpointError' in out and 'builtins.print' in out, f'{name}:\n{out[-3000:]}'
        assert f'{url}/{name}.pth' in out, f'{name}:\n{out[-3000:]}'
