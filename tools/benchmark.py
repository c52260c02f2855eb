"""Benchmark the IntroVAE training step (see mmintrovae/utils/benchmark.py for what is measured).

    python tools/benchmark.py --image-size 32 64 --batch-size 16 --mode paper simultaneous \\
        --iters 5 --repeats 3 --runner --out bench.json
    python tools/benchmark.py --config configs/introvae_celebahq256.py --image-size 256 \\
        --data-root data/emoji/train --iters 1 --repeats 3

Without --config each size uses its recipe (32 Fashion-MNIST, 64 emoji, 128/256/1024
CelebA-HQ); with --config every size uses that config (channels adapted to the size).
--precision (fp32, tf32, fp16, bf16) and --memory-format (contiguous, channels_last)
multiply the cases, e.g. on a GPU:

    python tools/benchmark.py --image-size 128 256 --batch-size 16 --no-data \
        --precision fp32 tf32 fp16 bf16 --memory-format contiguous channels_last

Prints a table and writes every figure to --out (JSON).
"""
import argparse
import json
import os
import os.path as osp
import sys
import time

# Runnable from a checkout without installing the package.
sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))


def parse_args(argv=None):
    from mmengine.config import DictAction

    from mmintrovae.utils.benchmark import MEMORY_FORMATS, MODES, PRECISIONS, PRESETS
    parser = argparse.ArgumentParser(description='Benchmark the IntroVAE training step')
    parser.add_argument('--config', nargs='+', help='config file(s); default: the recipe of '
                        f'each --image-size ({", ".join(f"{k}: {v}" for k, v in PRESETS.items())})')
    parser.add_argument('--image-size', type=int, nargs='+',
                        help='resolutions (default: the config\'s own)')
    parser.add_argument('--batch-size', type=int, nargs='+',
                        help='batch sizes (default: the config\'s own)')
    parser.add_argument('--mode', nargs='+', default=['paper'], choices=sorted(MODES),
                        help='update modes: paper (= alternating) and/or simultaneous')
    parser.add_argument('--precision', nargs='+', default=['fp32'], choices=PRECISIONS,
                        help='fp32 (TF32 off), tf32 (CUDA), fp16 (CUDA AMP with loss '
                        'scaling), bf16 (AMP); one case each (default fp32)')
    parser.add_argument('--memory-format', nargs='+', default=['config'],
                        choices=MEMORY_FORMATS,
                        help="model.channels_last per case; 'config' keeps the config's")
    parser.add_argument('--matmul-size', type=int,
                        help='n of the n x n matmul roofline (default 8192 on GPU, 2048 on CPU)')
    parser.add_argument('--iters', type=int, default=5, help='timed iterations per repeat')
    parser.add_argument('--warmup', type=int, default=1,
                        help='untimed iterations first (the first one counts the FLOPs)')
    parser.add_argument('--repeats', type=int, default=3, help='timed runs (median, spread)')
    parser.add_argument('--device', default=None, help='cpu, cuda, cuda:1 ... (default: cuda '
                        'when available)')
    parser.add_argument('--threads', type=int, help='torch.set_num_threads (default: torch\'s)')
    parser.add_argument('--data-root', default='data/emoji/train',
                        help='train images for configs whose own folder is missing '
                        '(CelebA-HQ here); default %(default)s')
    parser.add_argument('--no-data', action='store_true',
                        help='skip the dataloader measurements')
    parser.add_argument('--runner', action='store_true',
                        help='also time MMEngine\'s Runner.train against the bare loop')
    parser.add_argument('--runner-iters', type=int,
                        help='timed runner iterations (default --iters)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='config overrides for every case, e.g. model.channels_last=True')
    parser.add_argument('--out', help='write the results as JSON here')
    parser.add_argument('--markdown', action='store_true',
                        help='print the table as Markdown too (as in the README)')
    parser.add_argument('--report', nargs='+', metavar='JSON',
                        help='measure nothing: print the tables of earlier --out files')
    return parser.parse_args(argv)


def cases(args):
    from mmintrovae.utils.benchmark import PRESETS
    sizes = args.image_size or [None]
    if args.config:
        pairs = [(config, size) for config in args.config for size in sizes]
    else:
        if sizes == [None]:
            raise SystemExit('give --config or --image-size')
        missing = [s for s in sizes if s not in PRESETS]
        if missing:
            raise SystemExit(f'no recipe for sizes {missing}: give --config')
        pairs = [(PRESETS[size], size) for size in sizes]
    for config, size in pairs:
        for batch_size in args.batch_size or [None]:
            for mode in args.mode:
                for precision in args.precision:
                    for memory_format in args.memory_format:
                        yield config, size, batch_size, mode, precision, memory_format


def main(argv=None):
    args = parse_args(argv)
    import torch

    from mmintrovae.utils import benchmark as bench
    if args.report:
        results = [r for path in args.report for r in json.load(open(path))['results']]
        print(bench.format_table(results))
        print()
        print(bench.format_markdown(results))
        return dict(results=results)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    report = dict(machine=bench.machine_info(torch.device(device)),
                  started=time.strftime('%Y-%m-%d %H:%M:%S'),
                  loadavg_start=os.getloadavg(), argv=sys.argv[1:] if argv is None else argv,
                  results=[])

    def save():
        if args.out:
            report['speedups'] = bench.speedups(report['results'])
            with open(args.out, 'w') as f:
                json.dump(report, f, indent=1)

    for config, size, batch_size, mode, precision, memory_format in cases(args):
        print(f'--- {config} size={size or "config"} batch={batch_size or "config"} '
              f'mode={mode} precision={precision} memory={memory_format}', flush=True)
        result = bench.run_case(config, size, batch_size, mode, iters=args.iters,
                                warmup=args.warmup, repeats=args.repeats, device=device,
                                data_root=args.data_root, cfg_options=args.cfg_options,
                                data=not args.no_data, runner=args.runner,
                                runner_iters=args.runner_iters, precision=precision,
                                memory_format=memory_format, matmul_size=args.matmul_size)
        report['results'].append(result)
        print(bench.format_table([result]).splitlines()[-1], flush=True)
        save()  # a long run keeps what it has measured so far
    report['loadavg_end'] = os.getloadavg()
    save()
    print()
    print(bench.format_table(report['results']))
    if args.markdown:
        print()
        print(bench.format_markdown(report['results']))
    for s in bench.speedups(report['results']):
        print(f"{s['image_size']}px batch {s['batch_size']}: simultaneous/paper images/s = "
              f"{s['simultaneous_over_paper']:.2f}x (FLOP ratio {s['flop_ratio']:.2f}x)")
    print(f'machine: {report["machine"]}; load average at start {report["loadavg_start"]}, '
          f'end {report["loadavg_end"]}')
    if args.out:
        print(f'results written to {args.out}')
    return report


if __name__ == '__main__':
    main()
