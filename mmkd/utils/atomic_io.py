"""Atomic local writes for checkpoints (and every other file MMEngine writes locally).

MMEngine writes a checkpoint with ``open(path, 'wb').write(...)``: a kill, a full disk or a
node failure during the write leaves a truncated ``iter_N.pth`` under its final name, which
``last_checkpoint`` then points to. :class:`AtomicLocalBackend` writes to a temporary file in
the same directory, flushes it to disk and renames it over the final name, so the final name
holds either the previous complete file or the new complete one, never a part. It replaces
MMEngine's ``local`` file backend (the one ``get_file_backend`` returns for plain paths, used
by ``save_checkpoint`` and ``CheckpointHook``) when mmkd is imported.
"""
import os
import os.path as osp
import tempfile

from mmengine.fileio import LocalBackend, register_backend


def atomic_write(data, filepath: str, mode: str = 'wb', encoding=None) -> None:
    """Write ``data`` to ``filepath`` through a temporary file and an atomic rename."""
    directory = osp.dirname(osp.abspath(filepath))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{osp.basename(filepath)}.', suffix='.tmp',
                               dir=directory)
    try:
        with os.fdopen(fd, mode, encoding=encoding) as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates 0600 files; give the file the permissions open() would have.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, filepath)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


class AtomicLocalBackend(LocalBackend):
    """MMEngine's local file backend with atomic ``put``/``put_text``."""

    def put(self, obj: bytes, filepath) -> None:
        atomic_write(obj, str(filepath), 'wb')

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        atomic_write(obj, str(filepath), 'w', encoding=encoding)


def register_atomic_local_backend() -> None:
    """Make plain local paths use :class:`AtomicLocalBackend` (idempotent)."""
    register_backend('local', AtomicLocalBackend, force=True, prefixes='')
