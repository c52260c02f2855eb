"""Which distributions go into an offline wheelhouse (used by tools/make_wheelhouse.sh).

    python tools/wheelhouse_pick.py REPORT REQUIREMENTS [--profile full|gpu]
        [--present FILE] [--pinned NAME ...]   # prints name==version lines

REPORT is pip's ``--report`` JSON of a dry-run install of REQUIREMENTS for the target
Python. Taken: every resolved distribution, minus torch's and torchvision's own
dependency closure (extras followed: torch asks for ``cuda-toolkit[cublas,...]``, whose
extras pull the nvidia-* wheels), which is present wherever the target's torch is --
except packages that REQUIREMENTS names itself (numpy, pillow, setuptools: the project
pins its own versions). The gpu profile also leaves out what the target already holds
(FILE: names one a line, or ``pip list --format=freeze`` output; ``#`` comments),
except the ``--pinned`` names, which must come in the project's versions. Any OpenCV
build on the target provides ``cv2``, so it stands in for ``opencv-python``.
"""
import argparse
import json
import re
import sys
from typing import Dict, Iterable, List, Set

try:
    from packaging.requirements import Requirement
except ImportError:  # pip always carries it
    from pip._vendor.packaging.requirements import Requirement

TORCH_ROOTS = ('torch', 'torchvision')
OPENCV = {'opencv-python-headless', 'opencv-contrib-python', 'opencv-contrib-python-headless'}


def norm(name: str) -> str:
    """PEP 503 normalised name."""
    return re.sub(r'[-_.]+', '-', name).lower()


def read_names(lines: Iterable[str]) -> Set[str]:
    """Package names from requirement, name-only or ``pip freeze`` lines."""
    names = set()
    for line in lines:
        line = line.split('#', 1)[0].strip()
        if line:
            names.add(norm(re.split(r'[=<>!~;\[ @]', line, maxsplit=1)[0]))
    return names


def torch_closure(items: Dict[str, dict]) -> Set[str]:
    """Names torch and torchvision pull in (themselves included), extras followed."""
    def requires(name, extras):
        out = set()
        for spec in items[name].get('requires_dist') or []:
            req = Requirement(spec)
            if req.marker is None or any(req.marker.evaluate({'extra': e})
                                         for e in {''} | set(extras)):
                out.add((norm(req.name), frozenset(req.extras)))
        return out

    seen: Dict[str, frozenset] = {}
    todo = [(root, frozenset()) for root in TORCH_ROOTS]
    while todo:
        name, extras = todo.pop()
        if name not in items or (name in seen and extras <= seen[name]):
            continue
        seen[name] = seen.get(name, frozenset()) | extras
        todo += requires(name, seen[name])
    return set(seen)


def pick(report: dict, named: Set[str], profile: str = 'full', present: Set[str] = (),
         pinned: Iterable[str] = ()) -> List[str]:
    """``name==version`` of every distribution the wheelhouse must hold, sorted."""
    if profile not in ('full', 'gpu'):
        raise ValueError(f"profile must be 'full' or 'gpu', got {profile!r}")
    items = {norm(i['metadata']['name']): i['metadata'] for i in report['install']}
    keep = {n for n in items if n not in torch_closure(items) or n in named}
    if profile == 'gpu':
        have = {norm(n) for n in present}
        if have & OPENCV:
            have.add('opencv-python')
        keep -= have - {norm(n) for n in pinned}
    return [f"{name}=={items[name]['version']}" for name in sorted(keep)]


def main(argv=None) -> List[str]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('report')
    parser.add_argument('requirements')
    parser.add_argument('--profile', default='full', choices=['full', 'gpu'])
    parser.add_argument('--present', help='what the target holds (gpu profile)')
    parser.add_argument('--pinned', nargs='*', default=[])
    args = parser.parse_args(argv)
    if args.profile == 'gpu' and not args.present:
        parser.error('--profile gpu needs --present FILE')
    with open(args.report) as f:
        report = json.load(f)
    with open(args.requirements) as f:
        named = read_names(f)
    present = set()
    if args.present:
        with open(args.present) as f:
            present = read_names(f)
    lines = pick(report, named, args.profile, present, args.pinned)
    print('\n'.join(lines))
    return lines


if __name__ == '__main__':
    main()
