"""One training run per work dir: an OS lock on ``<work_dir>/train.lock``.

Two runs given the same work dir would both write ``epoch_*.pth``, ``last_checkpoint`` and
the config dump, the later silently overwriting the earlier. ``tools/train.py`` therefore
takes an exclusive lock on a file in the work dir before the Runner writes anything there,
and refuses to start, naming the run that holds it, when another run has it.

The lock is ``fcntl.flock`` on an open file: the kernel releases it when the holding process
ends, however it ends (SIGKILL and a crash included), so a dead run never leaves a stale lock
behind and ``--resume`` of a finished or killed run just works. The file itself stays (deleting
it would race with a run opening it); what it holds (pid, host, command, config, start time,
as JSON) is only there to name the holder in the refusal. Processes forked by the holder
(DataLoader workers) share the lock and keep it until they exit too, a few seconds after
their parent dies.

In a distributed run only the launcher's first process (global rank 0, read from the
launcher's environment because the process group does not exist yet) takes the lock; the
other ranks neither take nor wait for it. When rank 0 refuses, torchrun and srun
(``--kill-on-bad-exit``, see tools/slurm_launch.sh) stop the other ranks.

Only local (POSIX) file systems are guaranteed to honour the lock across processes: on NFS
``flock`` is emulated with byte-range locks (honoured across hosts on Linux); on file systems
without locking the refusal cannot be guaranteed.
"""
import fcntl
import json
import logging
import os
import os.path as osp
import shlex
import socket
import sys
import time
from typing import Optional

LOCK_FILE = 'train.lock'
ALLOW_OPTION = '--allow-shared-work-dir'
#: The environment variable holding the global rank, per launcher, before the process group
#: exists (torchrun sets RANK; MMEngine's MPI and Slurm set-ups read these).
RANK_VARIABLES = dict(pytorch='RANK', slurm='SLURM_PROCID', mpi='OMPI_COMM_WORLD_RANK')


class WorkDirInUseError(RuntimeError):
    """Another process holds the work dir's lock."""


def launcher_rank(launcher: str = 'none') -> int:
    """The process's global rank as the launcher set it in the environment (0 without one).

    Read before ``init_process_group``: MMEngine's ``get_rank()`` is 0 until then on every
    rank, which would make every rank take the lock.
    """
    variable = RANK_VARIABLES.get(launcher)
    return int(os.environ.get(variable, 0)) if variable else 0


class WorkDirLock:
    """The held lock of one work dir; released by :meth:`release`, or when the process ends."""

    def __init__(self, work_dir: str, fd: int):
        self.work_dir, self.path, self._fd = work_dir, osp.join(work_dir, LOCK_FILE), fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the only descriptor releases the flock
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()

    def __del__(self):
        self.release()


def _holder_info(config: Optional[str]) -> dict:
    return dict(pid=os.getpid(), host=socket.gethostname(),
                command=shlex.join([sys.executable, *sys.argv]), config=config,
                started=time.strftime('%Y-%m-%d %H:%M:%S %Z'))


def describe_holder(text: str) -> str:
    """A one-line description of the holder from the lock file's text."""
    try:
        info = json.loads(text)
        holder = (f"pid {info['pid']} on host {info['host']}, started {info['started']}, "
                  f"config {info['config']}, command: {info['command']}")
    except (ValueError, TypeError, KeyError):
        # Empty: the holder has just taken the lock and not yet written who it is.
        return 'a process that has not (yet) recorded who it is'
    if info['host'] == socket.gethostname() and not _alive(info['pid']):
        holder += ('; that process has ended, but processes it forked (DataLoader workers) '
                   'still hold the lock; they exit within seconds of it')
    return holder


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError, OverflowError):
        pass  # another user's process (alive), or an unreadable pid: say nothing
    return True


def _read(fd: int) -> str:
    return os.pread(fd, 1 << 16, 0).decode('utf-8', errors='replace')


def lock_work_dir(work_dir: str, config: Optional[str] = None, allow_shared: bool = False,
                  launcher: str = 'none') -> Optional[WorkDirLock]:
    """Take the training lock of ``work_dir`` (creating the dir), or refuse.

    Args:
        work_dir: the run's work dir.
        config: the config file, recorded for the message another run would print.
        allow_shared: when another run holds the lock, warn (naming it) and go on without the
            lock instead of raising (``tools/train.py --allow-shared-work-dir``).
        launcher: ``tools/train.py``'s ``--launcher``: ranks other than 0 take no lock.

    Returns:
        The held lock (keep a reference for the run's lifetime), or None on ranks other than 0
        and when ``allow_shared`` let the run go on without it.

    Raises:
        WorkDirInUseError: another process holds the lock (and ``allow_shared`` is False).
            Nothing in the work dir is written or created in that case.
    """
    if launcher_rank(launcher) != 0:
        return None
    os.makedirs(work_dir, exist_ok=True)
    path = osp.join(work_dir, LOCK_FILE)
    # No O_TRUNC: a refused run must not erase the holder's description.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = describe_holder(_read(fd))
        os.close(fd)
        message = (f'Work dir {work_dir} is in use by another training run ({holder}; lock '
                   f'file {path}). Two runs in one work dir overwrite each other\'s '
                   'checkpoints, last_checkpoint and config dump.')
        if not allow_shared:
            raise WorkDirInUseError(message + ' Wait for that run to end, give this one '
                                    f'another --work-dir, or pass {ALLOW_OPTION} to run '
                                    'anyway.') from None
        from mmengine.logging import print_log
        print_log(message + f' Going on anyway ({ALLOW_OPTION}).', logger='current',
                  level=logging.WARNING)
        return None
    data = json.dumps(_holder_info(config)).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    return WorkDirLock(work_dir, fd)
