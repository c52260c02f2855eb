"""FID, KID, precision/recall and density/coverage from one pass of Inception.

One metric class rather than one per quantity: MMagic hands every metric of an
evaluator the same generated images and each metric runs its own feature
extractor on them, so separate FID, KID and precision/recall metrics would run
Inception (about 0.4 s per image on a CPU, the whole cost of these metrics)
two or three times on the same images. Sharing features between metric
objects through a side channel would depend on the evaluator's call order;
one class computes everything from one feature matrix instead.
"""
import hashlib
import json
import logging
import math
import os
import os.path as osp
import tempfile
import time
from typing import Dict, Optional

import numpy as np
import torch
from mmengine.dataset import pseudo_collate
from mmengine.dist import all_gather, get_dist_info, is_main_process
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmagic.registry import METRICS
from torch import nn
from torch.utils.data import DataLoader

from .fid import IntroVAEFID, _is_remote, frechet_distance
from .kid import kernel_inception_distance
from .precision_recall import manifold_metrics

__all__ = ['IntroVAEInceptionMetrics', 'default_features_dir']

#: Bump when the way real features are computed changes: old cache files are then ignored.
FEATURES_FORMAT = 1


def default_features_dir() -> str:
    """``$MMINTROVAE_CACHE/features`` (default ``~/.cache/mmintrovae/features``)."""
    root = os.environ.get('MMINTROVAE_CACHE') or osp.join('~', '.cache', 'mmintrovae')
    return osp.join(osp.expanduser(root), 'features')


@METRICS.register_module()
class IntroVAEInceptionMetrics(IntroVAEFID):
    """FID, KID, precision/recall and density/coverage on the FID Inception features.

    The features are :class:`IntroVAEFID`'s (offline TF Inception, pool3,
    2048-d; the same network, resize and rounding), so ``FID/fid`` equals
    IntroVAEFID's value on the same images. The real images' raw features are
    cached (KID and the k-NN metrics need them all, not only their mean and
    covariance) in a ``.npz`` file read with ``allow_pickle=False``.

    Results (no prefix by default, so FID keeps the key ``FID/fid`` that the
    recipes' best-checkpoint rule reads; a ``prefix`` goes in front of all):

    - ``FID/fid``, ``FID/mean``, ``FID/cov``: as :class:`IntroVAEFID`.
    - ``KID/mean``, ``KID/std``: the unbiased KID averaged over ``kid_subsets``
      subsets of ``min(kid_subset_size, n_real, n_fake)`` images each, and the
      spread of those estimates (:func:`~.kid.kernel_inception_distance`).
      ``KID/subset_size`` says how large the subsets were.
    - ``PR/precision``, ``PR/recall`` (k-NN radii with ``pr_k``) and, with
      ``density_k``, ``PR/density`` and ``PR/coverage``
      (:func:`~.precision_recall.manifold_metrics`), on equal numbers of real
      and generated features: ``min(n_real, n_fake, pr_max_nums)`` of each,
      the larger set randomly subsampled. ``PR/num`` is that number.

    Args:
        fake_nums (int): Number of generated images.
        real_nums (int): Number of real images (-1: the whole dataset).
        inception_path (str, optional): As for :class:`IntroVAEFID`.
        real_feats_cache (str, optional): ``.npz`` file of the real features.
            None: ``$MMINTROVAE_CACHE/features/<hash>.npz``, the hash taken
            over the dataset (root, prefix, pipeline, and every file's path,
            size and modification time), ``real_nums``, ``real_key`` and the
            Inception network. A file is used only when it records that same
            hash; otherwise the features are recomputed and the file rewritten.
        kid_subsets (int): Number of KID subsets (100 in Binkowski et al.).
        kid_subset_size (int): Largest KID subset (1000 in Binkowski et al.).
        pr_k (int): Neighbours of the precision/recall balls (3).
        density_k (int, optional): Neighbours of the density/coverage balls
            (5, as Naeem et al.); None leaves density and coverage out.
        pr_max_nums (int): Most features per set for precision/recall (their
            cost grows with the product of the set sizes: about 10 s for
            10,000 x 10,000 here).
        seed (int): Seed of the subset draws (their own generator; the global
            random state is not touched).
        Other arguments: as for :class:`IntroVAEFID`.

    Real images: with a random flip in the validation pipeline each image is
    flipped or not when the features are computed; the cached features keep
    that draw.
    """

    default_prefix = ''  # no prefix: the keys carry their metric's name (FID/, KID/, PR/)

    def __init__(self,
                 fake_nums: int,
                 real_nums: int = -1,
                 inception_path: Optional[str] = None,
                 real_feats_cache: Optional[str] = None,
                 kid_subsets: int = 100,
                 kid_subset_size: int = 1000,
                 pr_k: int = 3,
                 density_k: Optional[int] = 5,
                 pr_max_nums: int = 10000,
                 seed: int = 0,
                 fake_key: Optional[str] = None,
                 real_key: Optional[str] = 'gt_img',
                 need_cond_input: bool = False,
                 sample_model: str = 'orig',
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None,
                 sample_kwargs: Optional[dict] = None):
        checks = dict(fake_nums=(fake_nums, 2), kid_subsets=(kid_subsets, 1),
                      kid_subset_size=(kid_subset_size, 2), pr_k=(pr_k, 1),
                      pr_max_nums=(pr_max_nums, 2))
        if density_k is not None:
            checks['density_k'] = (density_k, 1)
        for key, (value, least) in checks.items():
            if not isinstance(value, int) or value < least:
                raise ValueError(f'IntroVAEInceptionMetrics: {key} must be an integer >= {least}, '
                                 f'got {value!r}')
        if real_feats_cache is not None:
            real_feats_cache = str(real_feats_cache)
            if _is_remote(real_feats_cache):
                raise ValueError(f'real_feats_cache must be a local path, got {real_feats_cache!r}')
            real_feats_cache = osp.abspath(osp.expanduser(real_feats_cache))
        super().__init__(fake_nums, real_nums, 'StyleGAN', inception_path, None, fake_key,
                         real_key, need_cond_input, sample_model, collect_device, prefix,
                         sample_kwargs)
        self.real_feats_cache = real_feats_cache
        self.kid_subsets = kid_subsets
        self.kid_subset_size = kid_subset_size
        self.pr_k = pr_k
        self.density_k = density_k
        self.pr_max_nums = pr_max_nums
        self.seed = seed
        self.real_feats: Optional[np.ndarray] = None

    # ------------------------------------------------------------ real features
    def cache_key(self, dataset) -> str:
        """sha256 of what the real features depend on (see ``real_feats_cache``)."""
        files = []
        # get_data_info, not data_list: MMEngine serialises the list and empties it
        get_info = getattr(dataset, 'get_data_info', None)
        for i in range(len(dataset) if get_info else 0):
            info = get_info(i)
            path = info.get('gt_path') if isinstance(info, dict) else None
            if path is None:
                files.append(repr(info))
                continue
            try:
                st = os.stat(path)
                files.append(f'{path}:{st.st_size}:{st.st_mtime_ns}')
            except OSError:
                files.append(f'{path}:missing')
        record = dict(
            format=FEATURES_FORMAT,
            dataset=type(dataset).__name__,
            num_images=len(dataset),
            data_root=str(getattr(dataset, 'data_root', '')),
            data_prefix=repr(getattr(dataset, 'data_prefix', '')),
            pipeline=repr(getattr(dataset, 'pipeline', '')),
            files=files,
            real_nums=self.real_nums,
            real_key=self.real_key,
            network=self.inception_args['network'])
        return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()

    def _load_cached(self, path: str, key: str, num: int) -> Optional[np.ndarray]:
        if not osp.isfile(path):
            return None
        try:
            with np.load(path, allow_pickle=False) as f:
                stored_key, feats = str(f['key']), f['features']
        except (OSError, ValueError, KeyError) as e:
            print_log(f'IntroVAEInceptionMetrics: ignoring unreadable feature cache {path} ({e}); '
                      'recomputing it.', 'current', logging.WARNING)
            return None
        if stored_key != key or feats.ndim != 2 or len(feats) != num:
            print_log(f'IntroVAEInceptionMetrics: {path} holds the features of other data (or '
                      'another network); recomputing them.', 'current', logging.WARNING)
            return None
        return feats

    @staticmethod
    def _save_cached(path: str, key: str, feats: np.ndarray) -> None:
        folder = osp.dirname(path)
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix='.tmp-', suffix='.npz', dir=folder)
        os.close(fd)
        try:
            np.savez(tmp, key=np.array(key), features=feats)
            os.replace(tmp, path)
        finally:
            if osp.exists(tmp):
                os.remove(tmp)

    def extract_real_features(self, dataloader: DataLoader, data_preprocessor: nn.Module,
                              num: int) -> np.ndarray:
        """(num, 2048) float32 features of the first ``num`` images of the dataset, in order.

        Each process takes every world_size-th image; the gathered blocks are
        interleaved back into dataset order (duplicates that pad the last
        round are cut off at the end).
        """
        rank, world_size = get_dist_info()
        per_rank = math.ceil(num / world_size)
        indices = [(i * world_size + rank) % num for i in range(per_rank)]
        loader = DataLoader(dataloader.dataset, batch_size=dataloader.batch_size,
                            sampler=indices, collate_fn=pseudo_collate, shuffle=False,
                            drop_last=False)
        key = self.real_key or 'gt_img'
        start, feats = time.perf_counter(), []
        for data in loader:
            # training=False: BGR [0, 255] as the model's fake_img, no normalisation
            imgs = getattr(data_preprocessor(data, False)['data_samples'], key)
            feats.append(self.forward_inception(imgs).cpu())
        local = torch.cat(feats)
        gathered = torch.stack(all_gather(local), dim=1)  # (per_rank, world_size, d)
        out = gathered.reshape(-1, local.shape[1])[:num].numpy().astype(np.float32)
        print_log(f'IntroVAEInceptionMetrics: Inception features of {num} real images in '
                  f'{time.perf_counter() - start:.0f} s', 'current')
        return out

    def prepare(self, module: nn.Module, dataloader: DataLoader) -> None:
        """The real images' features: from the cache, or computed (and cached)."""
        if is_model_wrapper(module):
            module = module.module
        self.device = module.data_preprocessor.device
        self.inception.to(self.device).eval()
        dataset = dataloader.dataset
        num = len(dataset) if self.real_nums == -1 else min(len(dataset), self.real_nums)
        if num < 2:
            raise ValueError(f'IntroVAEInceptionMetrics needs at least 2 real images, the '
                             f'dataset has {len(dataset)} (real_nums={self.real_nums})')
        key = self.cache_key(dataset)
        path = self.real_feats_cache or osp.join(default_features_dir(), f'{key}.npz')
        feats = self._load_cached(path, key, num)
        if feats is not None:
            print_log(f'IntroVAEInceptionMetrics: real features of {num} images from {path}',
                      'current')
        else:
            feats = self.extract_real_features(dataloader, module.data_preprocessor, num)
            if is_main_process():
                try:
                    self._save_cached(path, key, feats)
                except OSError as e:
                    print_log(f'IntroVAEInceptionMetrics: could not write the feature cache '
                              f'{path} ({e}); set MMINTROVAE_CACHE or real_feats_cache to a '
                              'writable place.', 'current', logging.WARNING)
        self.real_feats = feats
        feats64 = feats.astype(np.float64)
        self.real_mean = feats64.mean(0)
        self.real_cov = np.cov(feats64, rowvar=False)

    # ----------------------------------------------------------------- results
    def compute_metrics(self, fake_results) -> Dict[str, float]:
        if self.real_feats is None:
            raise RuntimeError('IntroVAEInceptionMetrics has no real features: prepare() was '
                               'not called (use MultiValLoop/MultiTestLoop)')
        fake = torch.cat(list(fake_results), dim=0).cpu().numpy().astype(np.float32)
        real = self.real_feats
        fake64 = fake.astype(np.float64)
        fid, mean_term, cov_term = frechet_distance(fake64.mean(0), np.cov(fake64, rowvar=False),
                                                    self.real_mean, self.real_cov)
        out = {'FID/fid': fid, 'FID/mean': mean_term, 'FID/cov': cov_term}
        kid, kid_std, kid_size = kernel_inception_distance(
            real, fake, self.kid_subsets, self.kid_subset_size, self.seed)
        out.update({'KID/mean': kid, 'KID/std': kid_std, 'KID/subset_size': kid_size})
        # equal-size sets for the k-NN metrics (the radii shrink as a set grows)
        num = min(len(real), len(fake), self.pr_max_nums)
        needed = max(self.pr_k, self.density_k or 0) + 1
        if num < needed:
            # a validation of a long run should not fail on this: the other results stand
            print_log(f'IntroVAEInceptionMetrics: no precision/recall: k={self.pr_k} '
                      f'(density_k={self.density_k}) needs at least {needed} real and generated '
                      f'images, got {len(real)} real and {len(fake)} generated.', 'current',
                      logging.WARNING)
            return out
        rng = np.random.default_rng(self.seed)
        pick = (lambda feats: feats if len(feats) == num else
                feats[np.sort(rng.choice(len(feats), num, replace=False))])
        pr = manifold_metrics(pick(real), pick(fake), self.pr_k, self.density_k)
        out.update({f'PR/{k}': v for k, v in pr.items()})
        out['PR/num'] = num
        return out
