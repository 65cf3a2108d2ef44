"""What a checkpoint file must be before torch inflates or unpickles anything from it.

Every checkpoint mmkd loads from a local path (a teacher, ``load_from``, ``--resume``,
``tools/test.py``'s checkpoint, letKD templates, a downloaded URL once it is on disk) is checked
here first, in this order, without reading more than the zip archive's central directory until
the last step:

1. **A regular file.** A missing path, a directory (its ``*.pth`` files are listed), a device,
   FIFO or socket (``/dev/zero`` would be read forever) and an empty file are refused by name.
2. **A complete archive.** torch saves a zip archive (``PK`` magic); one without its central
   directory was truncated (a kill or a full disk during a copy). torch's pre-1.6 format (a bare
   pickle stream) is let through to torch, which reads it; anything else is not a checkpoint.
3. **Plausible sizes** (zip bombs): the sizes the archive *declares* for its records are
   checked before anything is inflated. torch stores records uncompressed, so a checkpoint's
   records add up to about its file size; an archive whose records declare more than
   ``max_ratio`` times its file size (default 10), or more than ``max_bytes`` in all (default
   64 GiB), is refused. torch's reader allocates what a record declares, so the declared sizes
   bound what loading can inflate.
4. **Every record's CRC-32** (``verify_crc``, on by default): a record whose bytes changed
   (bit rot, a bad copy, a tampered file) fails its checksum, so a corrupted teacher or
   checkpoint is refused instead of silently loading wrong weights. It reads the file once more
   (from the page cache when torch reads it next); its cost is measured in docs/benchmarks.md.

Downloads (``http(s)://`` and the schemes built on it) get bounded connect/read timeouts and the
same size cap (:func:`download_checkpoint`).

The limits are read from the environment at each load, so they reach every process of a run
(DDP workers, tools started by other tools)::

    MMKD_CHECKPOINT_MAX_BYTES   declared uncompressed bytes, all records (default 64 GiB)
    MMKD_CHECKPOINT_MAX_RATIO   declared uncompressed bytes / file size (default 10)
    MMKD_CHECKPOINT_VERIFY_CRC  1 (default) or 0: check every record's CRC-32
    MMKD_DOWNLOAD_TIMEOUT       seconds to connect, and between two reads (default 60)
"""
import dataclasses
import glob
import http.client
import os
import os.path as osp
import stat
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from typing import Optional

GiB = 1 << 30
#: Below this many declared bytes no archive is refused for its ratio (small records of text
#: or pickles compress well, and cannot exhaust memory anyway).
_RATIO_FLOOR = 64 << 20
# torch's pre-1.6 format starts with a pickled magic number (protocol 2: 0x80 0x02).
_LEGACY_MAGIC = b'\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19.'


class CheckpointFileError(RuntimeError):
    """A checkpoint file that must not be loaded (the subclasses say why)."""


class DamagedCheckpointError(CheckpointFileError):
    """Not a readable checkpoint: missing, not a regular file, empty, truncated, corrupted."""


class OversizedCheckpointError(CheckpointFileError):
    """An archive that declares implausible sizes (a zip bomb), or a download over the cap."""


class CheckpointDownloadError(CheckpointFileError):
    """A checkpoint URL that did not answer in time, or failed."""


@dataclasses.dataclass
class CheckpointLimits:
    max_bytes: int = 64 * GiB
    max_ratio: float = 10.0
    verify_crc: bool = True
    download_timeout: float = 60.0

    ENV = dict(max_bytes='MMKD_CHECKPOINT_MAX_BYTES', max_ratio='MMKD_CHECKPOINT_MAX_RATIO',
               verify_crc='MMKD_CHECKPOINT_VERIFY_CRC',
               download_timeout='MMKD_DOWNLOAD_TIMEOUT')

    @classmethod
    def from_env(cls) -> 'CheckpointLimits':
        """The defaults, overridden by the environment variables of the module docstring."""
        limits = cls()
        for field, var in cls.ENV.items():
            text = os.environ.get(var)
            if text is None:
                continue
            try:
                if field == 'verify_crc':
                    if text not in ('0', '1'):
                        raise ValueError
                    value = text == '1'
                else:
                    value = float(text) if field != 'max_bytes' else int(float(text))
                    if not value > 0:
                        raise ValueError
            except ValueError:
                valid = '0 or 1' if field == 'verify_crc' else 'a positive number'
                raise ValueError(f'{var}={text!r}: must be {valid}.') from None
            setattr(limits, field, value)
        return limits


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, 'a directory'), (stat.S_ISCHR, 'a character device'),
                       (stat.S_ISBLK, 'a block device'), (stat.S_ISFIFO, 'a FIFO (named pipe)'),
                       (stat.S_ISSOCK, 'a socket')):
        if test(mode):
            return name
    return 'not a regular file'


def file_problem(path: str) -> Optional[str]:
    """Why ``path`` is not a checkpoint file at all (step 1), or None."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return 'the file does not exist'
    except OSError as e:
        return f'it cannot be read ({e.strerror or e})'
    if stat.S_ISDIR(info.st_mode):
        found = sorted(glob.glob(osp.join(glob.escape(path), '*.pth')))
        inside = (f'; the .pth files in it: {[osp.basename(p) for p in found[:8]]}'
                  if found else '; it holds no .pth file')
        return f'it is a directory, not a checkpoint file (give the file itself{inside})'
    if not stat.S_ISREG(info.st_mode):
        return f'it is {_kind(info.st_mode)}, not a checkpoint file'
    if info.st_size == 0:
        return 'the file is empty (0 bytes)'
    return None


def archive_problem(path: str, limits: Optional[CheckpointLimits] = None,
                    verify_crc: Optional[bool] = None):
    """``(error class, reason)`` for a regular file that fails steps 2-4, or None."""
    limits = limits or CheckpointLimits.from_env()
    verify_crc = limits.verify_crc if verify_crc is None else verify_crc
    size = osp.getsize(path)
    with open(path, 'rb') as f:
        head = f.read(len(_LEGACY_MAGIC))
    if not head.startswith(b'PK'):
        if head == _LEGACY_MAGIC:
            return None  # torch's legacy format: torch reads (and checks) it
        return (DamagedCheckpointError, 'it is not a torch checkpoint (neither a zip archive, as '
                'torch.save writes, nor torch\'s legacy format)')
    try:
        with zipfile.ZipFile(path) as archive:
            records = archive.infolist()
            declared = sum(r.file_size for r in records)
            stored = sum(r.compress_size for r in records)
            if stored > size:
                return (DamagedCheckpointError, f'its records claim {stored:,} bytes of data in '
                        f'a file of {size:,} bytes (a malformed archive)')
            if declared > limits.max_bytes:
                return (OversizedCheckpointError, f'its records declare {declared:,} bytes '
                        f'uncompressed, over the cap of {limits.max_bytes:,} '
                        f'(set {CheckpointLimits.ENV["max_bytes"]} to allow more)')
            if declared > _RATIO_FLOOR and declared > limits.max_ratio * size:
                return (OversizedCheckpointError, f'its records declare {declared:,} bytes '
                        f'uncompressed in a file of {size:,} bytes (x{declared / size:,.0f}; '
                        f'torch stores records uncompressed, the cap is '
                        f'x{limits.max_ratio:g}): a zip bomb or not a torch checkpoint (set '
                        f'{CheckpointLimits.ENV["max_ratio"]} to allow more)')
            bad = archive.testzip() if verify_crc else None
    except zipfile.BadZipFile as e:
        return (DamagedCheckpointError, f'it is not a complete zip archive ({e}): truncated, '
                'e.g. by a kill or a full disk during a save or a copy')
    except (OSError, EOFError, RuntimeError, ValueError, NotImplementedError) as e:
        return (DamagedCheckpointError, f'it cannot be read as a zip archive '
                f'({type(e).__name__}: {e})')
    if bad is not None:
        return (DamagedCheckpointError, f'its record {bad!r} fails its CRC-32 check (the bytes '
                'changed since it was written: a corrupted copy)')
    return None


def check_checkpoint_file(path: str, source: Optional[str] = None) -> None:
    """Raise a :class:`CheckpointFileError` naming ``source`` (the checkpoint as the user gave
    it; default ``path``) when ``path`` fails any check of the module docstring."""
    source = source or path
    reason = file_problem(path)
    if reason is not None:
        error = FileNotFoundError if reason == 'the file does not exist' else \
            DamagedCheckpointError
        raise error(f'Refusing to load checkpoint {source}: {reason}.')
    found = archive_problem(path)
    if found is not None:
        error, reason = found
        raise error(f'Refusing to load checkpoint {source}: {reason}.')


def download_checkpoint(url: str, dst: str, limits: Optional[CheckpointLimits] = None) -> str:
    """Download ``url`` to ``dst`` (atomically: a partial file never has the final name) with
    bounded connect/read timeouts and the ``max_bytes`` cap; returns ``dst``."""
    limits = limits or CheckpointLimits.from_env()
    timeout = limits.download_timeout
    hint = (f'(set {CheckpointLimits.ENV["download_timeout"]}=<seconds> to wait longer, or '
            'download the file and give its path)')
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{osp.basename(dst)}.', suffix='.part',
                               dir=osp.dirname(osp.abspath(dst)))
    try:
        with os.fdopen(fd, 'wb') as out:
            request = urllib.request.Request(url, headers={'User-Agent': 'mmkd'})
            with urllib.request.urlopen(request, timeout=timeout) as response:
                total = 0
                while True:
                    chunk = response.read(1 << 20)
                    if not chunk:
                        break
                    total += len(chunk)
                    if total > limits.max_bytes:
                        raise OversizedCheckpointError(
                            f'Refusing to download checkpoint {url}: more than '
                            f'{limits.max_bytes:,} bytes (set '
                            f'{CheckpointLimits.ENV["max_bytes"]} to allow more).')
                    out.write(chunk)
        os.replace(tmp, dst)
    except CheckpointFileError:
        raise
    except TimeoutError:
        raise CheckpointDownloadError(
            f'Checkpoint {url}: no answer within {timeout:g} s {hint}.') from None
    except urllib.error.HTTPError as e:
        raise CheckpointDownloadError(f'Checkpoint {url}: the server answered HTTP {e.code} '
                                      f'({e.reason}).') from None
    except urllib.error.URLError as e:
        reason = e.reason
        if isinstance(reason, TimeoutError):
            raise CheckpointDownloadError(
                f'Checkpoint {url}: no connection within {timeout:g} s {hint}.') from None
        raise CheckpointDownloadError(f'Checkpoint {url}: cannot connect ({reason}).') from None
    except (OSError, ValueError, http.client.HTTPException) as e:  # a reset, a short read
        raise CheckpointDownloadError(f'Checkpoint {url}: the download failed '
                                      f'({type(e).__name__}: {e}).') from None
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
    return dst


def url_cache_path(url: str, model_dir: Optional[str] = None) -> str:
    """Where torch.hub caches ``url`` (``<hub dir>/checkpoints/<file name>``), so a file
    downloaded before is reused."""
    import torch.hub
    model_dir = model_dir or osp.join(torch.hub.get_dir(), 'checkpoints')
    name = osp.basename(urllib.parse.urlparse(url).path) or 'checkpoint.pth'
    return osp.join(model_dir, name)
