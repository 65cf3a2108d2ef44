"""What tools/train.py and tools/test.py both do to a config before building the Runner."""
import os.path as osp

from mmengine.config import Config


def load_tool_config(config: str, launcher: str = 'none', cfg_options=None,
                     work_dir=None) -> Config:
    """Load ``config`` (a local path or ``'mmdet::...'``), apply ``--cfg-options``, set the
    launcher and the work dir (``./work_dirs/<config name>`` by default, as OpenMMLab does)."""
    from ..distillers import resolve_config_path
    cfg = Config.fromfile(resolve_config_path(config))
    cfg.launcher = launcher
    if cfg_options is not None:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config))[0])
    return cfg
