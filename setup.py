import os.path as osp

from setuptools import find_packages, setup


def read_version():
    scope = {}
    with open(osp.join(osp.dirname(__file__), 'mmkd', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


setup(
    name='mmkd',
    version=read_version(),
    description='Knowledge distillation for OpenMMLab (mmpretrain, mmdet, mmsegmentation)',
    long_description=open('README.md').read() if osp.exists('README.md') else '',
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('configs', 'tools', 'tests', 'docs')),
    include_package_data=True,
    python_requires='>=3.9',
    # Ranges known to work together: mmdet 3.3 and mmseg 1.2 need mmcv < 2.2; mmcv 2.1.0 is
    # built from source with its C++ ops by tools/install.sh (no wheel exists for torch 2.14).
    install_requires=[
        'torch>=2.0',
        'torchvision',
        'mmengine>=0.10.4,<0.11',
        'mmcv>=2.1.0,<2.2.0',
        'mmdet>=3.3.0,<3.4.0',
        'mmsegmentation>=1.2.0,<1.3.0',
        'mmpretrain>=1.2.0,<1.3.0',
        # mmseg 1.2.2 imports these without declaring them.
        'ftfy',
        'regex',
        'scikit-learn',
        # letKD templates: the authors' k-means (tools/analysis/letkd_templates.py)
        'faiss-cpu',
        # the IQA demo set (its bundled photographs) and its SSIM labels
        'scikit-image',
        'scipy',
        # mmengine 0.10, mmcv's build and mmseg import pkg_resources, gone in setuptools 81.
        'setuptools<81',
        # loss curves (docs/getting_started.md, "Loss curves"): MMEngine's TensorboardVisBackend,
        # and tools/analysis/plot_curves.py (matplotlib, which mmengine requires too).
        'tensorboard',
        'matplotlib',
    ],
    # pytest-xdist: the suite runs on two workers (make test).
    # diffusers: test-only cross-check of DiffKD's DDIM sampler against DDIMScheduler.
    # timm: the VkD ImageNet teacher (RegNetY-160) through mmpretrain's TIMMBackbone.
    extras_require={'tests': ['pytest', 'pytest-xdist', 'diffusers', 'timm'], 'timm': ['timm']},
    license='Apache-2.0',
)
