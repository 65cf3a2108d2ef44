"""Parse each OpenMMLab package's metafiles once per process, not once per ``pkg::`` base.

MMEngine resolves a config base such as ``mmdet::retinanet/retinanet_r50_fpn_1x_coco.py`` (or
``mmdet::_base_/default_runtime.py``) by reading the package's ``.mim/model-index.yml`` and
then every metafile it lists (``mmengine.config.utils._get_cfg_metainfo``): for mmdet about
a hundred YAML files, parsed again for every ``pkg::`` reference of every config. That made
``Config.fromfile`` take about half a second of CPU per full-scale config, most of it in the
YAML parser (measured: 60 of the 93 profiled seconds of collecting this repository's tests).

:func:`cache_package_metafiles` puts a cache in front of the ``load`` of that module (whose
only caller is ``_get_cfg_metainfo``, which reads what it loads and changes nothing): a file
under a package's ``.mim`` folder is parsed once per process, and again only when its
modification time or size changes. ``_get_cfg_metainfo`` itself is wrapped to hand each caller
a deep copy of the entry it returns (a small dict), so that nothing a caller changes reaches
the cache. Every other use of ``mmengine.fileio.load`` is untouched.

The same lookup first asks ``is_installed(package)``, which reloads ``pkg_resources`` (a scan
of every installed distribution) each time: the config module's ``is_installed`` remembers the
packages found installed (a package not found is asked again, so one installed later is seen).
"""
import copy
import os
import threading

_lock = threading.Lock()
_parsed = {}  # (path, mtime_ns, size) -> the parsed content


def _is_metafile(path) -> bool:
    """A YAML file under a package's ``.mim`` folder (the paths MMEngine builds)."""
    return isinstance(path, str) and f'{os.sep}.mim{os.sep}' in path and \
        path.endswith(('.yml', '.yaml'))


def cached_metafile_load(load):
    """``load`` (MMEngine's ``fileio.load``) with package metafiles parsed once."""
    def cached(file, *args, **kwargs):
        if args or kwargs or not _is_metafile(file):
            return load(file, *args, **kwargs)
        try:
            stat = os.stat(file)
        except OSError:
            return load(file)  # MMEngine's own error
        key = (file, stat.st_mtime_ns, stat.st_size)
        with _lock:
            if key not in _parsed:
                _parsed[key] = load(file)
            return _parsed[key]  # shared: read only (see the module docstring)
    cached.__wrapped__ = load
    cached.mmkd_metafile_cache = True
    return cached


def copied_result(get_cfg_metainfo):
    """``_get_cfg_metainfo`` returning a deep copy of the (cached) metafile entry."""
    def wrapper(package_path, cfg_path):
        return copy.deepcopy(get_cfg_metainfo(package_path, cfg_path))
    wrapper.__wrapped__ = get_cfg_metainfo
    wrapper.mmkd_metafile_cache = True
    return wrapper


def remembered_when_installed(is_installed):
    """``is_installed`` that asks once per package found installed."""
    found = set()

    def wrapper(package):
        if package not in found and is_installed(package):
            found.add(package)
        return package in found
    wrapper.__wrapped__ = is_installed
    wrapper.mmkd_metafile_cache = True
    return wrapper


def cache_package_metafiles() -> None:
    """Install the caches in ``mmengine.config`` (once; a second call does nothing)."""
    from mmengine.config import config as config_module
    from mmengine.config import utils as config_utils
    if not getattr(config_module.is_installed, 'mmkd_metafile_cache', False):
        config_module.is_installed = remembered_when_installed(config_module.is_installed)
    if not getattr(config_utils.load, 'mmkd_metafile_cache', False):
        config_utils.load = cached_metafile_load(config_utils.load)
    if not getattr(config_utils._get_cfg_metainfo, 'mmkd_metafile_cache', False):
        config_utils._get_cfg_metainfo = copied_result(config_utils._get_cfg_metainfo)
