"""The set-up's import check: mmcv with compiled ops, MMEngine, MMagic and mmintrovae import.

    python tools/check_install.py [--json FILE]

The same modules as the last step of tools/setup_env.sh; tools/setup_offline.sh runs it
too. Prints one line with the versions (and writes them as JSON when asked); any import
error propagates, so a broken environment exits non-zero with the traceback.
"""
import json
import os.path as osp
import sys


def check() -> dict:
    import mmcv
    import mmcv.ops  # noqa: F401
    import mmengine
    import numpy
    import torch

    import mmagic.datasets  # noqa: F401
    import mmagic.engine  # noqa: F401
    import mmagic.evaluation  # noqa: F401
    import mmagic.models  # noqa: F401
    import mmagic.visualization  # noqa: F401
    import mmintrovae
    # lives in mmcv._ext: proves the compiled ops
    from mmcv.ops import get_compiling_cuda_version  # noqa: F401
    return dict(python=sys.version.split()[0], torch=torch.__version__,
                torch_file=osp.dirname(torch.__file__), cuda=torch.version.cuda,
                numpy=numpy.__version__, mmcv=mmcv.__version__, mmengine=mmengine.__version__,
                mmagic=mmagic.__version__, mmintrovae=mmintrovae.__version__,
                mmintrovae_file=osp.dirname(mmintrovae.__file__))


def main(argv=None) -> dict:
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--json', help='also write the versions here')
    args = parser.parse_args(argv)
    info = check()
    print(f"[setup] torch {info['torch']}, mmcv {info['mmcv']} (ops ok), "
          f"mmengine {info['mmengine']}, mmagic {info['mmagic']}, "
          f"mmintrovae {info['mmintrovae']}, numpy {info['numpy']}")
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(info, f, indent=1)
    return info


if __name__ == '__main__':
    main()
