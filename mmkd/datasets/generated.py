"""Write a generated dataset folder once, atomically, and reuse it while its parameters match.

Shared by the synthetic datasets (:func:`~mmkd.datasets.make_shapes_dataset`,
:func:`~mmkd.datasets.make_synthetic_iqa`): the data is written to a hidden temporary folder next
to ``out_dir``, ``meta.json`` (the parameters and the writer's summary) is written last, and the
folder is then renamed to ``out_dir``. A later call whose parameters match ``out_dir/meta.json``
returns at once without writing anything; a folder with other parameters (or any folder with
``overwrite=True``) is replaced; a non-empty folder without ``meta.json`` is not ours and raises
:class:`FileExistsError` unless ``overwrite=True``. ``out_dir`` is always absent, the old
complete dataset or the new complete one, also when two processes race or one is killed.
"""
import json
import os
import os.path as osp
import shutil
import uuid
from typing import Callable, Optional, Tuple


def read_meta(root: str) -> Optional[dict]:
    """The parsed ``meta.json`` of a finished dataset folder, or None."""
    try:
        with open(osp.join(root, 'meta.json')) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write_generated_dataset(out_dir: str, params: dict, write: Callable[[str], dict],
                            overwrite: bool = False, what: str = 'dataset'
                            ) -> Tuple[str, dict, bool]:
    """``write(tmp_folder) -> extra meta`` fills a fresh folder; returns ``(root, meta,
    generated)``, ``meta = dict(params=params, **extra)``, generated False when reused."""
    root = osp.abspath(osp.expanduser(str(out_dir)))
    if osp.exists(root):
        meta = read_meta(root)
        if meta is not None and meta.get('params') == params and not overwrite:
            return root, meta, False
        if meta is None and os.listdir(root) and not overwrite:
            raise FileExistsError(
                f'{root} exists, is not empty and has no meta.json: not a {what} made by '
                'mmkd; pass overwrite=True to replace it')

    parent, name = osp.split(root)
    os.makedirs(parent, exist_ok=True)
    # A unique hidden sibling (same file system, so the final rename is atomic). os.mkdir rather
    # than tempfile.mkdtemp, which would leave the dataset root readable by its owner only.
    tmp = osp.join(parent, f'.{name}.tmp-{uuid.uuid4().hex[:8]}')
    os.mkdir(tmp)
    try:
        meta = dict(params=params, **write(tmp))
        with open(osp.join(tmp, 'meta.json'), 'w') as f:
            json.dump(meta, f, indent=2)
        # Swap in: move any old folder aside first.
        trash = None
        if osp.lexists(root):
            trash = osp.join(parent, f'.{name}.old-{uuid.uuid4().hex[:8]}')
            os.rename(root, trash)
        try:
            os.rename(tmp, root)
        except OSError:
            other = read_meta(root)
            if other is not None and other.get('params') == params:
                # Lost a race with a concurrent call that has just written the same dataset.
                shutil.rmtree(tmp, ignore_errors=True)
                if trash is not None:
                    shutil.rmtree(trash, ignore_errors=True)
                return root, other, False
            if trash is not None and not osp.lexists(root):
                os.rename(trash, root)  # put the old dataset back
            raise
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root, meta, True
