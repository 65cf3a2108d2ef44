"""Write the synthetic shapes dataset (detection + segmentation) used by mmkd's toy configs.

    python tools/dataset_converters/make_shapes.py --out data/shapes \
        --num-train 300 --num-val 100 --num-tune 100 --img-size 64 --seed 0 [--overwrite]

Re-running with the same arguments reuses the existing folder (see
:func:`mmkd.datasets.shapes.make_shapes_dataset`).
"""
import argparse
import os.path as osp
import sys
import time


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', default='data/shapes', help='dataset root to write')
    parser.add_argument('--num-train', type=int, default=300, help='number of training images')
    parser.add_argument('--num-val', type=int, default=100, help='number of validation images')
    parser.add_argument('--num-tune', type=int, default=100,
                        help='number of images of the hyperparameter-tuning split')
    parser.add_argument('--img-size', type=int, default=64, help='image side in pixels')
    parser.add_argument('--seed', type=int, default=0, help='generation seed')
    parser.add_argument('--overwrite', action='store_true',
                        help='regenerate even if a matching dataset already exists')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        from mmkd.datasets.shapes import make_shapes_dataset
    except ImportError:  # run from a checkout without `pip install -e .`
        sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..', '..')))
        from mmkd.datasets.shapes import make_shapes_dataset
    start = time.perf_counter()
    info = make_shapes_dataset(args.out, num_train=args.num_train, num_val=args.num_val,
                               num_tune=args.num_tune,
                               img_size=args.img_size, seed=args.seed, overwrite=args.overwrite)
    elapsed = time.perf_counter() - start
    action = 'wrote' if info['generated'] else 'reused existing (parameters match)'
    print(f"{action} shapes dataset at {info['root']} in {elapsed:.2f}s "
          f"(img_size={info['img_size']}, seed={info['seed']}, classes={info['classes']})")
    for split in ('train', 'val', 'tune'):
        print(f"  {split}: {info[f'num_{split}']} images, "
              f"{info[f'num_{split}_instances']} shapes")
        print(f"    images:      {info[f'{split}_img_dir']}")
        print(f"    label maps:  {info[f'{split}_seg_dir']}")
        print(f"    annotations: {info[f'{split}_ann_file']}")


if __name__ == '__main__':
    main()
